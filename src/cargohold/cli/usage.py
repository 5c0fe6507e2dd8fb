"""``cargohold usage [NAMESPACE|REPOSITORY]``: storage used per namespace and per repository, as of the last refresh.

Works on the database directly (``--data-dir``, ``--config`` or ``CARGOHOLD_*`` as for ``serve``), as
``cargohold audit`` does; ``GET /admin/v1/usage`` serves the same figures. ``--refresh`` computes them
anew first (the server's job does every 15 minutes). What the figures count: :mod:`cargohold.usage`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from ..config import ConfigError
from ..metadata import open_metadata_store
from ..metadata.store import MetadataError
from ..sizes import human_size
from ..usage import Usage, UsageReport
from .registry_options import add_location_options, located_config, require_registry

_COLUMNS = ("total", "exclusive", "shared", "manifests", "tags", "last push", "last pull")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "usage", help="storage used per namespace and repository",
        description="Bytes the manifests of each namespace and repository reference (total, exclusive: referenced "
                    "by no other, shared), manifest and tag counts, last push and pull, as of the last refresh.",
    )
    add_location_options(parser)
    parser.add_argument("name", nargs="?", metavar="NAMESPACE|REPOSITORY",
                        help="one namespace (with its repositories) or one repository")
    parser.add_argument("--refresh", action="store_true", help="compute the figures anew first")
    parser.add_argument("--json", action="store_true", help="the figures as one JSON document")
    parser.set_defaults(func=run)


async def _read(url: str, name: str | None, refresh: bool) -> UsageReport:
    meta = open_metadata_store(url)
    try:
        if refresh:
            await meta.refresh_usage()
        return await meta.usage_report(name)
    finally:
        await meta.close()


def _when(stamp: int | None) -> str:
    return "" if stamp is None else datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _age(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _table(title: str, rows: list[Usage]) -> None:
    cells = [[title.upper(), *(c.upper() for c in _COLUMNS)]]
    cells += [[u.name, human_size(u.total_bytes), human_size(u.exclusive_bytes), human_size(u.shared_bytes),
               str(u.manifests), str(u.tags), _when(u.last_push_at), _when(u.last_pull_at)] for u in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _print(report: UsageReport, now: float) -> None:
    if report.computed_at is None:
        print("no usage figures yet: the server computes them soon after it starts, or run cargohold usage --refresh")
        return
    print(f"figures computed at {_when(report.computed_at)} ({_age(max(0, int(now) - report.computed_at))} ago; "
          "--refresh computes them anew)")
    for title, rows in (("namespace", report.namespaces), ("repository", report.repositories)):
        if rows:
            print()
            _table(title, rows)


def run(args: argparse.Namespace) -> int:
    try:
        config = located_config(args)
        require_registry(config)
    except ConfigError as exc:
        print(f"cargohold usage: {exc}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(_read(config.metadata_url, args.name, args.refresh))
    except (MetadataError, OSError) as exc:
        print(f"cargohold usage: {exc}", file=sys.stderr)
        return 1
    if args.name is not None and report.computed_at is not None and not report.namespaces \
            and not report.repositories:
        print(f"cargohold usage: no namespace or repository {args.name} (as of the last refresh)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.to_json(time.time()), indent=2))
    else:
        _print(report, time.time())
    return 0
