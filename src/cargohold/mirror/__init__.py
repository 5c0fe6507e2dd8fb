"""Scheduled mirroring: jobs that copy a repository between another registry and this one.

:mod:`.model` (jobs, runs, their records), :mod:`.tagfilter` (regex or semver range), :mod:`.run` (one run,
over the client's copy), :mod:`.local` (how a job reaches this registry), :mod:`.service` (schedule, leases,
backoff). Import the submodules: this package imports nothing, so the metadata store can use the model.
"""
