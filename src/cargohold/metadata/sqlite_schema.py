"""Migrating an SQLite database (see :mod:`.schema`)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from .migrations import Migration
from .schema import APPLIED, AppliedMigration, record
from .sqlite_db import SqliteDatabase
from .store import MetadataError


def applied_versions(db: SqliteDatabase) -> set[int]:
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").fetchone() is None:
        return set()
    return {int(row[0]) for row in db.execute(APPLIED)}


class SqliteSchema:
    dialect = "sqlite"

    def __init__(self, path: str, create: bool):
        self.path = path
        self._create = create
        self._db: SqliteDatabase | None = None

    def _connection(self) -> SqliteDatabase | None:
        # opened only under the lock: two processes switching a new file to WAL at once can fail
        # with "database is locked" without waiting for the busy timeout
        if self._db is None and (self._create or self.path == ":memory:" or os.path.exists(self.path)):
            self._db = SqliteDatabase(self.path, what="metadata")
        return self._db

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        # A lock file rather than one long transaction: each migration commits on its own, and a
        # second process waits on the lock for as long as the migrations take (SQLite's busy timeout
        # would give up after seconds). The kernel drops the lock if the process dies.
        if self.path == ":memory:":  # no other process can reach it
            yield
            return
        path = f"{self.path}-migrate.lock"
        try:
            lock = open(path, "a")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise MetadataError(f"cannot create the migration lock {path}: {exc.strerror or exc}") from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def applied(self) -> dict[int, AppliedMigration]:
        db = self._connection()
        if db is None or not applied_versions(db):
            return {}
        return {int(v): AppliedMigration(int(v), n, int(at)) for v, n, at in db.execute(APPLIED)}

    def apply(self, migration: Migration) -> bool:
        db = self._connection()
        assert db is not None
        with db.transaction():
            return record(db.execute, migration)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
