"""``cargohold migrate --from-sqlite DIR``: copy an embedded registry's metadata into PostgreSQL.

Every table of the SQLite database (at this cargohold's schema) is copied row by row, keys and
ids kept, in one PostgreSQL transaction that also holds the checks (a difference rolls it back):
as many rows in each table on both sides, every blob with the same size, every manifest's bytes
hashing to its digest. A row already there is overwritten with the SQLite one, so a second run
after more pushes brings the copy up to date and a repeated run changes nothing. Blobs stay where
they are (serve the same data directory). Failed-login counters and job leases are not copied:
both are short-lived.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from typing import Any, Final

from .migrations import require_current
from .postgres_db import connect, reported
from .sqlite_db import SqliteDatabase
from .sqlite_schema import applied_versions
from .store import MetadataError

#: in the order their foreign keys need
TABLES: Final = (
    "repositories", "blobs", "repository_blobs", "manifests", "manifest_references", "tags", "generated_manifests",
    # when each manifest was last pulled (retention keeps what was pulled recently)
    "manifest_pulls",
    "uploads", "accounts", "teams", "team_members", "repository_permissions", "public_repositories",
    "refresh_tokens", "credential_generation", "events", "event_deliveries", "webhook_endpoints",
    # an S3 blob store's uploads and where its blobs are
    "store_uploads", "store_upload_parts", "store_blobs",
    # the keys the registry made for itself (tokens signed before the move stay valid)
    "signing_keys",
    # immutable tag rules
    "immutable_tag_rules",
    # the scrub's runs and what they found
    "scrub_runs", "scrub_findings",
    # garbage collection's queues (what is left to review, bytes left to delete) and its runs
    "gc_manifest_review", "gc_blob_review", "gc_object_deletions", "gc_runs",
    # namespace quotas (with the use of each, exact as copied)
    "namespace_quotas",
    # mirror jobs and their runs
    "mirror_jobs", "mirror_runs",
)


#: what is not copied: short-lived state, and the migrations' own record (made by the migrations)
LEFT_BEHIND: Final = (
    "failed_logins", "job_leases", "schema_migrations",
    # usage figures: the next refresh computes them
    "repository_usage", "namespace_usage", "usage_refreshes",
    # web UI logins: users log in again on the new database
    "ui_sessions",
)


class CopyFailed(MetadataError):
    """The copy's checks found a difference; the message names it."""


@dataclass(frozen=True, slots=True)
class CopyResult:
    #: table -> rows in both databases after the copy
    rows: dict[str, int]


def _columns(pg: Any, table: str) -> tuple[list[str], set[str], list[str], list[str]]:
    """Its columns, the boolean ones, the primary key's and the identity ones."""
    rows = pg.execute(
        "SELECT column_name, data_type, is_identity FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position", (table,),
    ).fetchall()
    key = [row[0] for row in pg.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
        " WHERE i.indrelid = %s::regclass AND i.indisprimary", (table,),
    ).fetchall()]
    return ([r[0] for r in rows], {r[0] for r in rows if r[1] == "boolean"}, key,
            [r[0] for r in rows if r[2] == "YES"])


def copy_from_sqlite(data_dir: str, url: str, blobs_copied: bool = False) -> CopyResult:
    """Copy ``data_dir``'s ``metadata.db`` into the (migrated) PostgreSQL database at ``url``;
    ``blobs_copied``: its blobs are copied into an S3 store too, whose records (``store_blobs``) the
    database may hold more of than SQLite."""
    path = os.path.join(data_dir, "metadata.db")
    if not os.path.exists(path):
        raise MetadataError(f"{data_dir} holds no registry (no metadata.db)")
    source = SqliteDatabase(path, what="sqlite registry")
    try:
        require_current(applied_versions(source), "sqlite")
    finally:
        source.close()
    counts: dict[str, int] = {}
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as lite, connect(url, "metadata") as pg, \
            reported("metadata"), pg.transaction():
        for table in TABLES:
            columns, booleans, key, identity = _columns(pg, table)
            names = ", ".join(columns)
            rows = lite.execute(f"SELECT {names} FROM {table}").fetchall()
            flags = [name in booleans for name in columns]
            values = [tuple(bool(v) if flag and v is not None else v for v, flag in zip(row, flags, strict=True))
                      for row in rows]
            others = [c for c in columns if c not in key]
            update = (f"DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in others)}" if others
                      else "DO NOTHING")
            if values:
                with pg.cursor() as cursor:
                    cursor.executemany(
                        f"INSERT INTO {table} ({names}) OVERRIDING SYSTEM VALUE"  # noqa: S608 - our names
                        f" VALUES ({', '.join(['%s'] * len(columns))}) ON CONFLICT ({', '.join(key)}) {update}",
                        values,
                    )
            for column in identity:  # the next id after the copied ones
                pg.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
                           f" COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)")
            counts[table] = len(rows)
        _check(lite, pg, counts, {"store_blobs"} if blobs_copied else set())  # a difference rolls the whole copy back
    return CopyResult(counts)


def _check(lite: sqlite3.Connection, pg: Any, counts: dict[str, int], growing: set[str]) -> None:
    """``growing``: tables that may hold more rows in PostgreSQL."""
    for table, count in counts.items():
        found = pg.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        if found != count and not (table in growing and found > count):
            raise CopyFailed(f"{table}: {count} rows in SQLite, {found} in PostgreSQL (rows the copy did not "
                             "overwrite: copy into an empty database)")
    blobs = dict(lite.execute("SELECT digest, size FROM blobs").fetchall())
    copied = dict(pg.execute("SELECT digest, size FROM blobs").fetchall())
    if blobs != copied:
        raise CopyFailed("blobs: the digests or sizes differ between SQLite and PostgreSQL")
    for repository_id, digest, content in pg.execute("SELECT repository_id, digest, content FROM manifests"):
        algorithm, _, hexdigest = digest.partition(":")
        if algorithm in hashlib.algorithms_guaranteed and hashlib.new(algorithm, content).hexdigest() != hexdigest:
            raise CopyFailed(f"manifest {digest} (repository {repository_id}): its bytes do not hash to its digest")
