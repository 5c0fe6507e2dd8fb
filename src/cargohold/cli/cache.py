"""``cargohold cache info|prune``: the local blob cache that pulls go through."""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

from ..client.cache import BlobCache, parse_age
from ..sizes import human_size, parse_size
from .client_common import add_json_option, command, print_json, print_table


def _cache(args: argparse.Namespace) -> BlobCache:
    return BlobCache(Path(args.cache_dir) if args.cache_dir else None)


def _when(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(timespec="seconds")


@command
def cmd_info(args: argparse.Namespace) -> int:
    cache = _cache(args)
    entries = cache.entries()
    blobs = [e for e in entries if not e.partial]
    partial = [e for e in entries if e.partial]
    blob_bytes, partial_bytes = sum(e.size for e in blobs), sum(e.size for e in partial)
    document = {
        "directory": str(cache.root),
        "blobs": len(blobs),
        "blobBytes": blob_bytes,
        "partialDownloads": len(partial),
        "partialBytes": partial_bytes,
        "totalBytes": sum(e.size for e in entries),
        "maxSize": cache.max_size,
        "leastRecentlyUsed": _when(entries[0].used if entries else None),
        "mostRecentlyUsed": _when(entries[-1].used if entries else None),
    }
    if args.json:
        print_json(document)
        return 0
    limit = human_size(cache.max_size) if cache.max_size is not None else "none"
    print_table(
        ["FIELD", "VALUE"],
        [
            ("Directory", cache.root),
            ("Blobs", f"{len(blobs)} ({human_size(blob_bytes)})"),
            ("Partial downloads", f"{len(partial)} ({human_size(partial_bytes)})"),
            ("Size limit", limit),
            ("Least recently used", document["leastRecentlyUsed"] or ""),
            ("Most recently used", document["mostRecentlyUsed"] or ""),
        ],
    )
    return 0


@command
def cmd_prune(args: argparse.Namespace) -> int:
    max_size = parse_size(args.max_size) if args.max_size is not None else None
    older_than = parse_age(args.older_than) if args.older_than is not None else None
    result = _cache(args).prune(max_size=max_size, older_than=older_than)
    if args.json:
        print_json(
            {
                "removed": result.removed,
                "freedBytes": result.freed,
                "kept": result.kept,
                "keptBytes": result.kept_bytes,
                "inUse": result.in_use,
            }
        )
        return 0
    in_use = f"; {result.in_use} in use by running transfers" if result.in_use else ""
    print(
        f"removed {result.removed} ({human_size(result.freed)}), "
        f"kept {result.kept} ({human_size(result.kept_bytes)}){in_use}"
    )
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cache info`` and ``cache prune``."""
    cache = subparsers.add_parser("cache", help="show or prune the local blob cache")
    verbs = cache.add_subparsers(dest="cache_command", required=True, metavar="COMMAND")
    p = verbs.add_parser("info", help="where the cache is, what it holds, its size limit")
    p.set_defaults(func=cmd_info)
    info = p
    p = verbs.add_parser(
        "prune",
        help="remove cached blobs, least recently used first (no option: all of them)",
        description="Remove cached blobs not used by a running transfer: those unused for --older-than, "
        "then the least recently used until the cache fits --max-size; with neither, all of them. "
        "Pulls keep the cache within CARGOHOLD_CACHE_MAX_SIZE (default 10G) on their own.",
    )
    p.add_argument("--max-size", metavar="SIZE", help="keep at most this much (500M, 2G)")
    p.add_argument("--older-than", metavar="AGE", help="remove what was last used longer ago (7d, 12h)")
    p.set_defaults(func=cmd_prune)
    for parser in (info, p):
        parser.add_argument("--cache-dir", metavar="DIR", help="blob cache (default ~/.cache/cargohold)")
        add_json_option(parser)
