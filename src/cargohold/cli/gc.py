"""``cargohold gc``: collect what nothing references now (or, ``--dry-run``, list it), or list past runs.

Works on the registry's database and blob store directly (``--data-dir``, ``--config`` or ``CARGOHOLD_*``
as for ``serve``), while the server runs: a collection never takes what a push needs
(:mod:`cargohold.service.gc`). ``POST /admin/v1/gc`` runs the same collection over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
from typing import Any

from ..config import ConfigError, ServerConfig
from ..metadata import open_metadata_store
from ..metadata.store import MetadataError
from ..service.gc import HISTORY, open_collector, run_json
from ..storage import open_blob_store
from ..storage.driver import StorageError
from .registry_options import add_location_options, located_config, require_registry


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "gc", help="collect unreferenced manifests and blobs",
        description="Delete the manifests no tag, index or subject keeps and the blobs no manifest references,"
                    " past their grace periods (gc.grace_period, gc.untagged_grace_period), and purge abandoned"
                    " uploads; print what went, per repository and in total.",
    )
    add_location_options(parser)
    parser.add_argument("--dry-run", action="store_true", help="list what a collection would delete, delete nothing")
    parser.add_argument("--repository", metavar="PATTERN", help="only these repositories (a glob: team/*)")
    parser.add_argument("--history", action="store_true", help="list the last runs instead of running one")
    parser.add_argument("--limit", type=int, default=HISTORY, help=f"runs --history lists (default {HISTORY})")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


async def _work(config: ServerConfig, args: argparse.Namespace) -> list[dict[str, Any]]:
    meta = open_metadata_store(config.metadata_url)
    try:
        blobs = open_blob_store(config.storage.driver, config.storage.driver_options(config.data_dir), meta)
        collector = open_collector(config, meta, blobs)
        if args.history:
            return [run_json(found) for found in await collector.history(args.limit)]
        report = await collector.run(dry_run=args.dry_run, repository=args.repository)
        return [report.to_json()]
    finally:
        await meta.close()


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    size, units = count / 1024, ["KiB", "MiB", "GiB", "TiB"]
    while size >= 1024 and len(units) > 1:
        size, units = size / 1024, units[1:]
    return f"{size:.1f} {units[0]}"


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _print_report(report: dict[str, Any]) -> None:
    verb = "would delete" if report["dry_run"] else "deleted"
    rows = [["REPOSITORY", "MANIFESTS", "BLOBS", "BYTES"]]
    for name, found in report["repositories"].items():
        rows.append([name, str(len(found["manifests"])), str(len(found["blobs"])), _size(found["bytes"])])
    if len(rows) > 1:
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    print(f"{verb}: {report['manifests']} manifests, {report['blobs']} blobs, {_size(report['bytes_freed'])}"
          f" ({report['bytes_freed']} bytes), {report['uploads']} abandoned uploads")
    for error in report["errors"]:
        print(f"error: {error}")


def _print_history(runs: list[dict[str, Any]]) -> None:
    rows = [["ID", "STARTED", "FINISHED", "DRY", "MANIFESTS", "BLOBS", "BYTES", "ERRORS"]]
    for found in runs:
        rows.append([str(found["id"]), _when(found["started"]), _when(found["finished"]),
                     "yes" if found["dry_run"] else "no", str(found["manifests"]), str(found["blobs"]),
                     str(found["bytes_freed"]), str(len(found["errors"]))])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def run(args: argparse.Namespace) -> int:
    try:
        config = located_config(args)
        require_registry(config)
        if args.limit < 1:
            raise ConfigError("--limit must be at least 1")
    except ConfigError as exc:
        print(f"cargohold gc: {exc}", file=sys.stderr)
        return 2
    try:
        found = asyncio.run(_work(config, args))
    except (MetadataError, StorageError, OSError) as exc:
        print(f"cargohold gc: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(found if args.history else found[0], indent=2, sort_keys=True))
    elif args.history:
        _print_history(found)
    else:
        _print_report(found[0])
    return 0 if args.history or not found[0]["errors"] else 1
