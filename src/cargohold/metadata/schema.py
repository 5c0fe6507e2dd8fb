"""``migrate(url)``: bring a metadata database's schema up to this cargohold's, once, whoever else tries.

The steps are the same for every database; what differs per SQL dialect is a
:class:`SchemaTarget` (see :data:`cargohold.metadata.factory.DATABASES`): how to keep
a second migrating process out (SQLite: a lock file next to the database; PostgreSQL:
an advisory lock), which versions are recorded, and how one migration is applied and
recorded in a transaction of its own. Opening a store never migrates: it refuses a
schema that is behind or ahead (:func:`~cargohold.metadata.migrations.require_current`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from .migrations import Migration, current_version, load_migrations, refuse_newer, split_statements
from .store import MetadataError


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    version: int
    name: str
    applied_at: int


#: the recorded migrations, as every dialect keeps them
APPLIED: Final = "SELECT version, name, applied_at FROM schema_migrations"


def record(execute: Callable[..., Any], migration: Migration) -> bool:
    """:meth:`SchemaTarget.apply` inside the caller's transaction; ``execute(text[, args])`` runs one statement
    (``?`` placeholders) on a blocking connection and returns its cursor."""
    execute("CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)")
    if execute("SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)).fetchone():
        return False
    for statement in split_statements(migration.sql):
        execute(statement)
    execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (migration.version, migration.name, int(time.time())))
    return True


class SchemaTarget(Protocol):
    """One database as the migrations see it."""

    @property
    def dialect(self) -> str: ...

    def exclusive(self) -> AbstractContextManager[None]:
        """Held from the first read of the applied versions to the last migration: another
        process migrating the same database waits for it (however long a migration takes)."""
        ...

    def applied(self) -> dict[int, AppliedMigration]:
        """The recorded migrations (none for a database that does not exist yet)."""
        ...

    def apply(self, migration: Migration) -> bool:
        """Run and record one migration in one transaction; False if it was recorded already
        (checked inside that transaction, so even a process that skipped the lock cannot
        apply it twice)."""
        ...

    def close(self) -> None: ...


class MigrationFailed(MetadataError):
    """A migration failed (and was rolled back); the ones before it stay applied."""

    def __init__(self, message: str, applied: list[Migration]):
        super().__init__(message)
        self.applied = applied


@dataclass(frozen=True, slots=True)
class MigrationRun:
    dialect: str
    version: int
    #: what this run applied, in order (another process may have applied the rest)
    applied: list[Migration] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MigrationState:
    version: int
    name: str
    #: "applied", "pending", or "unknown" (recorded by a newer cargohold)
    state: str
    applied_at: int | None


def _open(url: str, *, create: bool) -> SchemaTarget:
    from .factory import database_for

    database = database_for(url)
    load_migrations(database.dialect)  # a package without them creates no database
    return database.open_schema(url, create)


def migrate(url: str) -> MigrationRun:
    """Apply every pending migration in order, each in its own transaction, and record it."""
    target = _open(url, create=True)
    try:
        known = load_migrations(target.dialect)
        done: list[Migration] = []
        with target.exclusive():
            applied = target.applied()
            refuse_newer(applied, target.dialect)
            for migration in known:
                if migration.version in applied:
                    continue
                try:
                    if target.apply(migration):
                        done.append(migration)
                except Exception as exc:  # noqa: BLE001 - a full disk too: the run ends with what it did
                    raise MigrationFailed(f"migration {migration.label} failed (rolled back): {exc}", done) from exc
        return MigrationRun(target.dialect, known[-1].version if known else 0, done)
    finally:
        target.close()


def status(url: str) -> tuple[int, list[MigrationState]]:
    """The schema version and every migration, known or recorded, with its state; changes nothing."""
    target = _open(url, create=False)
    try:
        applied = target.applied()
        states = [
            MigrationState(m.version, m.name, "applied" if m.version in applied else "pending",
                           applied[m.version].applied_at if m.version in applied else None)
            for m in load_migrations(target.dialect)
        ]
        known = {s.version for s in states}
        states += [MigrationState(a.version, a.name, "unknown", a.applied_at)
                   for a in applied.values() if a.version not in known]
        states.sort(key=lambda s: s.version)
        version = max(applied, default=0) if len(known) < len(states) else current_version(applied, target.dialect)
        return version, states
    finally:
        target.close()
