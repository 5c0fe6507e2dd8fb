"""``cargohold scrub``: run the scrub now, or print what it found (``--report``).

Works on the registry's database and blob store directly (``--data-dir``, ``--config`` or ``CARGOHOLD_*``
as for ``serve``), beside a running server. A run first sweeps what a crash left in the blob store
(files or objects that no row names, once past the store's ``orphan_grace_seconds``), then re-hashes
the next ``--sample`` blobs (``scrub.sample_size``) after where the last run stopped, and prints what
it checked and every open finding: a blob whose stored bytes do not match its digest or size, or are
missing. Findings are reported, never repaired (see :mod:`cargohold.service.scrub`).
``GET /admin/v1/scrub`` serves the same report.

Exit status: 0 when no finding is open, 1 when one is (or the run failed), 2 for bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
from typing import Any, Final

from ..config import ConfigError, ServerConfig
from ..metadata import open_metadata_store
from ..scrub import ScrubFinding, ScrubRun
from ..service.scrub import SCRUB_ERRORS, Scrubber, ScrubFailed
from ..storage import open_blob_store
from .registry_options import add_location_options, located_config, print_rows, require_registry

#: runs listed by --report
RUNS_SHOWN: Final = 10


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "scrub", help="check stored blobs against their digests; remove what a crash left",
        description="Sweep the blob store of what a crash left, re-hash a sample of stored blobs, and print"
                    " every blob whose bytes do not match its digest or size.",
    )
    add_location_options(parser)
    parser.add_argument("--sample", type=int, metavar="N", help="blobs to re-hash (default: scrub.sample_size)")
    parser.add_argument("--report", action="store_true", help="run nothing: print the findings and the last runs")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def _when(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _finding_row(finding: ScrubFinding) -> dict[str, Any]:
    return {"digest": finding.digest, "problem": finding.problem, "expected": finding.expected_size,
            "found": "" if finding.found_size is None else f"{finding.found_size} {finding.found_digest}",
            "since": _when(finding.first_found_at)}


def _run_line(run: ScrubRun) -> str:
    swept = "" if run.orphans_removed is None else f", {run.orphans_removed} orphans removed"
    failed = "" if run.error is None else f", failed: {run.error}"
    return (f"{_when(run.started_at)} ({run.started_by}): {run.checked} blobs checked ({run.bytes_checked} bytes),"
            f" {run.problems} problems{swept}{failed}")


async def _scrub(config: ServerConfig, sample: int, report: bool) -> tuple[ScrubRun | None, list[ScrubRun],
                                                                             list[ScrubFinding]]:
    meta = open_metadata_store(config.metadata_url)
    try:
        if report:
            return None, await meta.scrub_runs(RUNS_SHOWN), await meta.scrub_findings()
        blobs = open_blob_store(config.storage.driver, config.storage.driver_options(config.data_dir), meta)
        try:
            done = (await Scrubber(blobs, meta).run(sample, started_by="command", sweep=True)).run
        except ScrubFailed as failed:
            done = failed.run
        return done, [], await meta.scrub_findings()
    finally:
        await meta.close()


def run(args: argparse.Namespace) -> int:
    try:
        config = located_config(args)
        require_registry(config)
        if config.storage.driver == "memory":
            raise ConfigError("storage.driver memory: a registry's blobs live in its server process; nothing to scrub")
        sample = config.scrub.sample_size if args.sample is None else args.sample
        if sample < 1:
            raise ConfigError("--sample must be at least 1")
    except ConfigError as exc:
        print(f"cargohold scrub: {exc}", file=sys.stderr)
        return 2
    try:
        done, runs, findings = asyncio.run(_scrub(config, sample, args.report))
    except SCRUB_ERRORS as exc:
        print(f"cargohold scrub: {exc}", file=sys.stderr)
        return 1
    if args.json:
        document: dict[str, Any] = {"findings": [finding.to_json() for finding in findings]}
        document.update({"runs": [r.to_json() for r in runs]} if args.report else
                        {"run": None if done is None else done.to_json()})
        print(json.dumps(document, indent=2))
    else:
        for line in [_run_line(r) for r in ([done] if done is not None else runs)]:
            print(line)
        if findings:
            print_rows(args, [_finding_row(f) for f in findings], ["digest", "problem", "expected", "found", "since"])
        else:
            print("no blob found wrong")
    if done is not None and done.error is not None:
        print(f"cargohold scrub: the run failed: {done.error}", file=sys.stderr)
        return 1
    return 1 if findings else 0
