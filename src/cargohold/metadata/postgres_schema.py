"""Migrating a PostgreSQL database (see :mod:`.schema`).

The database itself must exist (``createdb``); its tables are made here. Another
process (a replica started at the same moment) is kept out by a session advisory lock
held from the first read of the applied versions to the last migration; each
migration runs in a transaction of its own (PostgreSQL's DDL is transactional).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import psycopg

from .migrations import Migration
from .postgres_db import connect, reported, sql
from .schema import APPLIED, AppliedMigration, record

#: the advisory lock key of cargohold's migrations (any constant; the bytes of "cargohold")
MIGRATION_LOCK: Final = 0x636172676F686F6C


def applied_rows(db: psycopg.Connection[Any]) -> list[tuple[int, str, int]]:
    row = db.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return []
    return [(int(v), n, int(at)) for v, n, at in db.execute(APPLIED)]


def applied_versions(url: str) -> set[int]:
    with connect(url, "metadata") as db, reported("metadata"):
        return {version for version, _, _ in applied_rows(db)}


class PostgresSchema:
    dialect = "postgres"

    def __init__(self, url: str, create: bool):
        # ``create`` does not apply: the URL names a database that exists (or connecting fails)
        self.url = url
        self._db = connect(url, "metadata")

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        # a session lock (not a transaction's): it spans every migration's own transaction, and
        # the server drops it if this process dies
        with reported("metadata"):
            self._db.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            yield
        finally:
            with reported("metadata"):
                self._db.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))

    def applied(self) -> dict[int, AppliedMigration]:
        with reported("metadata"):
            return {v: AppliedMigration(v, n, at) for v, n, at in applied_rows(self._db)}

    def apply(self, migration: Migration) -> bool:
        with reported("metadata"), self._db.transaction():
            return record(self._execute, migration)

    def _execute(self, text: str, args: Sequence[Any] | None = None) -> psycopg.Cursor[Any]:
        # a migration's statements have no parameters, and no placeholders either
        return self._db.execute(text if args is None else sql(text), args)

    def close(self) -> None:
        self._db.close()
