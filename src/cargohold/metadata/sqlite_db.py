"""One SQLite connection as the SQL stores use it (:class:`~.sql.SqlDatabase`): metadata, access model,
login counters.

Statements run inline on the event loop: they take microseconds, less than handing them to a
thread would (the ``async`` methods never suspend). WAL journal so readers never wait for a
writer and several worker processes can share the file; ``synchronous=NORMAL`` (durable at
checkpoints, never corrupt); every failure surfaces as :class:`MetadataError`, which the API answers with 500,
except a full disk, which is :class:`~cargohold.errcodes.InsufficientStorage` (507).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any, Final

from ..errcodes import InsufficientStorage
from ..metrics import recorder as metrics
from .sql import Row
from .store import MetadataError

#: writers in other worker processes hold the lock for milliseconds
BUSY_TIMEOUT_MS: Final = 10_000


log: Final = logging.getLogger("cargohold.metadata")


def _failure(what: str, exc: sqlite3.Error) -> Exception:
    # SQLite reports ENOSPC as SQLITE_FULL (it does not pass other errnos such as EDQUOT on)
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        log.warning("registry out of space: %s database: %s", what, exc)
        return InsufficientStorage(f"registry out of space ({what} database: {exc})")
    return MetadataError(f"{what}: {exc}")


class SqliteDatabase:
    unlimited: int | None = -1
    round_trips = False
    # BEGIN IMMEDIATE: a transaction is the only writer until it ends, no row needs a lock
    for_update = ""
    for_update_skip_locked = ""

    def __init__(self, path: str, *, what: str = "sqlite"):
        self.path = path
        self._what = what
        #: the task whose unit of work (:meth:`unit_of_work`) is open; None outside one
        self._owner: asyncio.Task[Any] | None = None
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise MetadataError(f"{what} {path}: {exc}") from exc

    def _check_owner(self) -> None:
        if self._owner is not None and asyncio.current_task() is not self._owner:
            # the unit of work yielded to the event loop: this statement would join it
            raise MetadataError(f"{self._what}: a statement of another task inside an open transaction")

    def execute(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        if self._owner is not None:
            self._check_owner()
        started = time.perf_counter()
        try:
            return self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise _failure(self._what, exc) from exc
        finally:
            metrics.db_query(started)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> sqlite3.Cursor:
        if self._owner is not None:
            self._check_owner()
        started = time.perf_counter()
        try:
            return self._db.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise _failure(self._what, exc) from exc
        finally:
            metrics.db_query(started)

    # the SQL stores' statements (:class:`~.sql.SqlDatabase`)

    def for_share(self) -> str:
        return ""

    def any_of(self, values: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
        return f"IN ({','.join('?' * len(values))})", tuple(values)

    def glob(self, column: str, patterns: Sequence[str]) -> tuple[str, tuple[Any, ...]]:
        return "(" + " OR ".join(f"{column} GLOB ?" for _ in patterns) + ")", tuple(patterns)

    @property
    def in_unit_of_work(self) -> bool:
        return self._owner is not None

    async def fetchone(self, text: str, args: Sequence[Any] = ()) -> Row | None:
        row: Row | None = self.execute(text, args).fetchone()
        return row

    async def fetchall(self, text: str, args: Sequence[Any] = ()) -> list[Row]:
        return self.execute(text, args).fetchall()

    async def write(self, text: str, args: Sequence[Any] = ()) -> int:
        return self.execute(text, args).rowcount

    async def write_many(self, text: str, rows: Sequence[Sequence[Any]]) -> None:
        self.executemany(text, rows)

    @asynccontextmanager
    async def atomic(self) -> AsyncIterator[None]:
        with self.transaction():
            yield

    async def lock_exclusive(self, table: str) -> None:
        return None

    async def hold_locks(self, names: Iterable[str]) -> None:
        return None

    async def check(self) -> None:
        # an open connection keeps working on a file deleted under it, losing every write
        if self.path != ":memory:" and not os.path.exists(self.path):
            raise MetadataError(f"{self._what}: {self.path} is gone")
        self.execute("SELECT version FROM schema_migrations LIMIT 1").fetchall()

    async def aclose(self) -> None:
        self.close()

    @contextmanager
    def transaction(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[SqliteDatabase]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on any exception; inside an open one, part of it."""
        if self._db.in_transaction:
            yield self
            return
        self.execute(begin)
        try:
            yield self
            self.execute("COMMIT")
        except BaseException:
            # On a full disk SQLite rolls back by itself: a ROLLBACK then fails and would
            # hide the error. Any other failure (of COMMIT too) is rolled back here.
            if self._db.in_transaction:
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise

    @asynccontextmanager
    async def unit_of_work(self, read_only: bool = False) -> AsyncIterator[None]:
        """A transaction of the current task (BEGIN IMMEDIATE: its reads and writes are one step
        against every other writer); nesting is refused, and so is any other task's statement
        until it ends."""
        if self._db.in_transaction:
            raise MetadataError(f"{self._what}: transactions do not nest")
        # a deferred transaction reads one snapshot (WAL) without the writer's lock
        with self.transaction("BEGIN" if read_only else "BEGIN IMMEDIATE"):
            self._owner = asyncio.current_task()
            try:
                yield
            finally:
                self._owner = None

    def close(self) -> None:
        self._db.close()
