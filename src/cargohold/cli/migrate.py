"""``cargohold migrate``: bring the metadata database's schema up to this cargohold's.

``serve`` runs the same step before it starts its workers, so running this by hand is
needed only to migrate ahead of a restart, or before ``cargohold admin`` on an upgraded
registry. Any number may run at once: each migration is applied once, by one of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from ..config import ConfigError, ServerConfig, load_config
from ..errcodes import RegistryError
from ..metadata.factory import shown
from ..metadata.migrations import Migration
from ..metadata.schema import MigrationFailed, migrate, status
from ..metadata.store import MetadataError
from .registry_options import add_location_options

if TYPE_CHECKING:
    from ..storage.copying import BlobCopy


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "migrate", help="apply pending database migrations",
        description="Apply the metadata database's pending schema migrations (database.url, or the data "
                    "directory's metadata.db), in order, each once. Workers and admin refuse a database "
                    "that is behind until this has run; serve runs it before starting its workers.",
    )
    add_location_options(parser)
    parser.add_argument("--from-sqlite", dest="from_sqlite", metavar="DIR",
                        help="copy the metadata of the registry in DIR (its metadata.db) into --database-url's "
                             "PostgreSQL database, then check the copy; safe to run again")
    parser.add_argument("--copy-blobs", dest="copy_blobs", action="store_true",
                        help="with --from-sqlite: copy the blobs of DIR's filesystem store into the S3 store "
                             "(storage.s3), each checked against its digest; blobs already there are skipped")
    parser.add_argument("--status", action="store_true", help="list applied and pending migrations; change nothing")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def _when(applied_at: int | None) -> str:
    return "" if applied_at is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(applied_at))


def _show_status(url: str, display: str, as_json: bool) -> int:
    version, states = status(url)
    if as_json:
        print(json.dumps({"database": display, "version": version, "migrations": [
            {"version": s.version, "name": s.name, "state": s.state, "appliedAt": _when(s.applied_at) or None}
            for s in states]}, indent=2))
        return 0
    print(f"database {display}: schema at {version}")
    for s in states:
        print(f"{s.version:04d}_{s.name}  {s.state}  {_when(s.applied_at)}".rstrip())
    return 0


def run(args: argparse.Namespace) -> int:
    from ..storage.driver import StorageError

    try:
        config = load_config(None, {"config": args.config, "data_dir": args.data_dir,
                                    "database_url": args.database_url}, dict(os.environ))
    except ConfigError as exc:
        print(f"cargohold migrate: {exc}", file=sys.stderr)
        return 2
    url, display = config.metadata_url, shown(config.metadata_url)
    try:
        if args.status:
            return _show_status(url, display, args.json)
        os.makedirs(config.data_dir, exist_ok=True)
        if args.from_sqlite is not None and url.startswith("sqlite://"):
            print("cargohold migrate: --from-sqlite copies into PostgreSQL: give --database-url (or database.url)",
                  file=sys.stderr)
            return 2
        if args.copy_blobs and (args.from_sqlite is None or config.storage.driver != "s3"):
            print("cargohold migrate: --copy-blobs copies into the S3 store: give --from-sqlite DIR and "
                  "storage.driver s3 (with its storage.s3 settings)", file=sys.stderr)
            return 2
        done = migrate(url)
        if args.from_sqlite is not None:
            from ..metadata.copy import copy_from_sqlite

            copied = copy_from_sqlite(args.from_sqlite, url, args.copy_blobs)
        if args.copy_blobs:
            blobs = asyncio.run(_copy_blobs(config, args.from_sqlite))
    except MigrationFailed as exc:
        _show_applied(display, None, exc.applied, args.json)
        print(f"cargohold migrate: {exc}", file=sys.stderr)
        return 1
    except (MetadataError, StorageError, RegistryError, OSError) as exc:
        print(f"cargohold migrate: {exc}", file=sys.stderr)
        return 1
    _show_applied(display, done.version, done.applied, args.json,
                  copied.rows if args.from_sqlite is not None else None, blobs if args.copy_blobs else None)
    if args.from_sqlite is not None and not args.json:
        print(f"copied {sum(copied.rows.values())} rows from {args.from_sqlite} into {display} and checked "
              f"them ({', '.join(f'{table}: {n}' for table, n in copied.rows.items() if n)})")
    if args.copy_blobs:
        return _show_blobs(blobs, config.storage.s3.bucket, args.json)
    return 0


async def _copy_blobs(config: ServerConfig, data_dir: str) -> BlobCopy:
    from ..metadata import open_metadata_store
    from ..storage.copying import copy_blobs, named_blobs
    from ..storage.s3 import S3BlobStore

    meta = open_metadata_store(config.metadata_url)
    try:
        store = S3BlobStore(config.storage.driver_options(config.data_dir), meta)
        await store.check(True)
        return await copy_blobs(data_dir, store, named_blobs(data_dir))
    finally:
        await meta.close()


def _show_blobs(blobs: BlobCopy, bucket: str, as_json: bool) -> int:
    """The blob copy's summary (on stdout after the rows'; with --json, in the document); 1 if it is not
    complete."""
    if not as_json:
        print(f"blobs: {blobs.total} named, {blobs.copied} copied ({blobs.bytes} bytes) into bucket {bucket}, "
              f"{blobs.present} there already")
    for digest in blobs.missing:
        print(f"cargohold migrate: blob {digest}: no file, not copied", file=sys.stderr)
    for digest in blobs.corrupt:
        print(f"cargohold migrate: blob {digest}: its file does not match its digest, not copied", file=sys.stderr)
    for digest in blobs.unchecked:
        print(f"cargohold migrate: blob {digest}: not in the bucket at its size after the copy", file=sys.stderr)
    return 0 if blobs.ok else 1


def _show_applied(
    url: str, version: int | None, applied: list[Migration], as_json: bool, copied: dict[str, int] | None = None,
    blobs: BlobCopy | None = None,
) -> None:
    """What a run applied; ``version`` None: it failed after those. ``url`` as shown (no password)."""
    if as_json:
        document: dict[str, Any] = {"database": url, "applied": [{"version": m.version, "name": m.name}
                                                                 for m in applied]}
        if version is not None:
            document["version"] = version
        if copied is not None:
            document["copied"] = copied
        if blobs is not None:
            document["blobs"] = {"total": blobs.total, "copied": blobs.copied, "bytes": blobs.bytes,
                                 "present": blobs.present, "missing": blobs.missing, "corrupt": blobs.corrupt,
                                 "unchecked": blobs.unchecked}
        print(json.dumps(document, indent=2))
        return
    for migration in applied:
        print(f"applied {migration.label}")
    if version is not None:
        print(f"database {url}: schema at {version}" + ("" if applied else " (nothing to apply)"))
