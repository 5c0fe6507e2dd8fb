"""Periodic background work, run by one process of the deployment at a time (a lease in the database)."""

from __future__ import annotations

from ..service import RegistryService
from .activity import Activity
from .audit import AUDIT_PURGE_INTERVAL_SECONDS, EventRetention, audit_purge_job
from .deliveries import DeliveryLoop
from .purge import PURGE_INTERVAL_SECONDS, ExpiredLeases, purge_job
from .runner import Job, JobRunner, Leases, LeasesFailing, holder_id
from .scrub import scrub_job
from .sweep import sweep_job
from .usage import usage_job


def registry_jobs(registry: RegistryService, leases: ExpiredLeases) -> list[Job]:
    """Every periodic job of the registry server."""
    return [purge_job(registry, leases)]


__all__ = [
    "Activity", "AUDIT_PURGE_INTERVAL_SECONDS", "DeliveryLoop", "EventRetention", "ExpiredLeases", "Job", "JobRunner",
    "Leases", "LeasesFailing",
    "PURGE_INTERVAL_SECONDS", "audit_purge_job", "holder_id", "purge_job", "registry_jobs", "scrub_job",
    "sweep_job", "usage_job",
]
