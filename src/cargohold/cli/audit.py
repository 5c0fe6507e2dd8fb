"""``cargohold audit``: read the audit log of the data directory's database, newest entry first.

Works on the database directly (``--data-dir``, ``--config`` or ``CARGOHOLD_*`` as
for ``serve``), as ``cargohold admin`` does: whoever may read the data may read
the log. ``GET /admin/v1/audit`` serves the same entries over HTTP, with the same
filters. A page ends with the ``--before`` of the next one (on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, Final

from ..config import ConfigError
from ..events.audit import BadFilter, EventFilter, LoggedEvent, entry_json, parse_time
from ..metadata import open_metadata_store
from ..metadata.store import MetadataError
from .registry_options import add_location_options, located_config, require_registry

#: entries per page unless --limit says otherwise
DEFAULT_LIMIT: Final = 100
_COLUMNS: Final = ("seq", "time", "action", "result", "actor", "address", "repository", "target")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "audit", help="read the audit log",
        description="Read the audit log (pushes, pulls, deletes, logins, tokens, admin changes), newest first.",
    )
    add_location_options(parser)
    parser.add_argument("--repository", metavar="PATTERN", help="a repository, or a glob (team/* is a namespace)")
    parser.add_argument("--actor", metavar="NAME", help="a user or robot (OWNER+NAME)")
    parser.add_argument("--action", metavar="ACTION", help="manifest.push, login, ...; or a noun: manifest")
    parser.add_argument("--since", metavar="TIME", help="ISO 8601 time, or relative: 30m, 1h, 7d")
    parser.add_argument("--until", metavar="TIME", help="ISO 8601 time, or relative: 30m, 1h, 7d")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help=f"entries per page (default {DEFAULT_LIMIT})")
    parser.add_argument("--before", type=int, metavar="SEQ", help="the page after this entry (older ones)")
    parser.add_argument("--json", action="store_true", help="one JSON object per entry, one per line")
    parser.set_defaults(func=run)


def _filter(args: argparse.Namespace) -> EventFilter:
    return EventFilter(
        repository=args.repository, actor=args.actor, action=args.action,
        since=parse_time(args.since) if args.since else None, until=parse_time(args.until) if args.until else None,
    )


def _target(entry: dict[str, Any]) -> str:
    detail = entry["detail"]
    if entry["action"] == "admin":
        return " ".join(f"{k}={v}" for k, v in detail.items())
    parts = [f":{entry['tag']}" if entry["tag"] else "", f"@{entry['digest']}" if entry["digest"] else ""]
    return "".join(parts) or " ".join(f"{k}={v}" for k, v in detail.items())


def _print_table(entries: list[LoggedEvent]) -> None:
    rows = []
    for logged in entries:
        entry = entry_json(logged)
        entry["actor"] = entry["actor"] or entry["actor_kind"]
        entry["target"] = _target(entry)
        rows.append({c: "" if entry[c] is None else str(entry[c]) for c in _COLUMNS})
    widths = [max([len(c), *(len(r[c]) for r in rows)]) for c in _COLUMNS[:-1]]
    print("  ".join(c.upper().ljust(w) for c, w in zip(_COLUMNS, [*widths, 0], strict=True)).rstrip())
    for row in rows:
        print("  ".join(row[c].ljust(w) for c, w in zip(_COLUMNS, [*widths, 0], strict=True)).rstrip())


async def _read(url: str, where: EventFilter, limit: int, before: int | None) -> list[LoggedEvent]:
    meta = open_metadata_store(url)
    try:
        return await meta.list_events(where, limit, before)
    finally:
        await meta.close()


def run(args: argparse.Namespace) -> int:
    try:
        config = located_config(args)
        require_registry(config)
        where = _filter(args)
        if args.limit < 1:
            raise BadFilter("--limit must be at least 1")
    except (ConfigError, BadFilter) as exc:
        print(f"cargohold audit: {exc}", file=sys.stderr)
        return 2
    try:
        found = asyncio.run(_read(config.metadata_url, where, args.limit + 1, args.before))
    except (MetadataError, OSError) as exc:
        print(f"cargohold audit: {exc}", file=sys.stderr)
        return 1
    entries = found[:args.limit]
    if args.json:
        for entry in entries:
            print(json.dumps(entry_json(entry), sort_keys=True))
    else:
        _print_table(entries)
    if len(found) > args.limit:
        print(f"cargohold audit: more entries: --before {entries[-1].seq}", file=sys.stderr)
    return 0
