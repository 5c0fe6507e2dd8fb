"""A PostgreSQL database as the SQL stores use it (:class:`~.sql.SqlDatabase`): metadata, access model,
login counters.

Each store has a pool of psycopg's async connections, opened on first use (inside the
event loop of the worker or the CLI command that uses it) and closed with the store.
Connections are in autocommit: a lone statement is its own transaction, a method that
writes several rows opens one (:meth:`PostgresDatabase.atomic`), and a unit of work holds
one connection and one transaction for its whole block (:meth:`PostgresDatabase.unit_of_work`).
The stores' SQL has ``?`` placeholders: :func:`sql` translates each statement text once (cached).

Every failure surfaces as :class:`MetadataError`, except a full disk, which is
:class:`~cargohold.errcodes.InsufficientStorage` (507), as with SQLite.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from functools import cache
from typing import Any, Final

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from ..errcodes import InsufficientStorage
from ..metrics import recorder as metrics
from .sql import Row
from .store import MetadataError

#: how long a request waits for a free connection before it fails (the database is down or saturated)
POOL_TIMEOUT: Final = 10.0
#: seconds to connect; a readiness check fails after this rather than hang
CONNECT_TIMEOUT: Final = 5
#: seconds a readiness check waits for the database: a database that is down fails it, never hangs it
CHECK_TIMEOUT: Final = 1.0
#: the readiness check's query: the database answers, and holds cargohold's schema
_CHECK: Final = "SELECT version FROM schema_migrations LIMIT 1"

log: Final = logging.getLogger("cargohold.metadata")


@cache
def sql(text: str) -> str:
    """SQLite's ``?`` placeholders as psycopg's ``%s`` (no literal in our SQL holds ``?`` or ``%``)."""
    return text.replace("%", "%%").replace("?", "%s")


def glob_regex(pattern: str) -> str:
    """SQLite's GLOB (``*``, ``?``, ``[...]``, case-sensitive, whole string) as a PostgreSQL regular expression."""
    out, i = ["^"], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1:end]
            negated = body.startswith("^")
            body = body[1:] if negated else body
            out.append("[" + ("^" if negated else "") + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(char) if not char.isalnum() else char)
        i += 1
    return "".join(out) + "$"


def failure(what: str, exc: psycopg.Error) -> Exception:
    if isinstance(exc, psycopg.errors.DiskFull):
        log.warning("registry out of space: %s database: %s", what, exc)
        return InsufficientStorage(f"registry out of space ({what} database: {exc})")
    return MetadataError(f"{what}: {str(exc).strip() or type(exc).__name__}")


@contextmanager
def reported(what: str) -> Iterator[None]:
    """psycopg's errors as the stores' (:func:`failure`)."""
    try:
        yield
    except psycopg.Error as exc:
        raise failure(what, exc) from exc


def connect(url: str, what: str) -> psycopg.Connection[Any]:
    """A plain (blocking) connection in autocommit, for schema checks and migrations."""
    with reported(what):
        return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)


async def _close_with_loop(pool: AsyncConnectionPool) -> None:
    """Close ``pool`` when this task is cancelled, as ``asyncio.run`` does to every task when it ends.

    The pool's maintenance tasks survive a cancellation (they are written to keep the pool alive), so
    an event loop ending with the pool open would wait for them forever.
    """
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        await pool.close(timeout=1)
        raise


class PostgresDatabase:
    unlimited: int | None = None
    round_trips = True
    for_update = " FOR UPDATE"
    for_update_skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, *, what: str, max_size: int):
        self.url = url
        self._what = what
        self._max_size = max_size
        self._pool: AsyncConnectionPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closer: asyncio.Task[None] | None = None
        #: the task whose unit of work is open and its connection (a task it starts inherits the
        #: variable, but not the connection: its statements are not part of the unit of work)
        self._current: ContextVar[tuple[asyncio.Task[Any] | None, AsyncConnection[Any]] | None] = ContextVar(
            f"{what}-unit-of-work", default=None)

    def _own(self) -> AsyncConnection[Any] | None:
        current = self._current.get()
        return current[1] if current is not None and current[0] is asyncio.current_task() else None

    async def _opened(self) -> AsyncConnectionPool:
        loop = asyncio.get_running_loop()
        if self._pool is not None and self._loop is not loop:
            self._abandon()  # opened by an event loop that has ended (an earlier asyncio.run)
        if self._pool is None:
            self._loop = loop
            self._pool = AsyncConnectionPool(
                self.url, min_size=1, max_size=self._max_size, open=False, timeout=POOL_TIMEOUT, name=self._what,
                kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
            )
            await self._pool.open()
            self._closer = asyncio.create_task(_close_with_loop(self._pool), name=f"{self._what} pool closer")
        return self._pool

    @property
    def in_unit_of_work(self) -> bool:
        return self._own() is not None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        """The open unit of work's connection, or one from the pool (each statement commits on its own)."""
        current = self._own()
        if current is not None:
            with reported(self._what):
                yield current
            return
        pool = await self._opened()
        with reported(self._what):
            async with pool.connection() as connection:
                yield connection

    @asynccontextmanager
    async def atomic(self) -> AsyncIterator[None]:
        """A transaction for a method that writes several rows; inside a unit of work, part of it."""
        if self._own() is not None:
            yield
            return
        async with self.connection() as connection, connection.transaction():
            token = self._current.set((asyncio.current_task(), connection))  # what it calls joins it
            try:
                yield
            finally:
                self._current.reset(token)

    @asynccontextmanager
    async def unit_of_work(self, read_only: bool = False) -> AsyncIterator[None]:
        """One connection and one transaction for the block; nesting is refused."""
        if self._own() is not None:
            raise MetadataError(f"{self._what}: transactions do not nest")
        async with self.connection() as connection, connection.transaction():
            if read_only:
                await connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            token = self._current.set((asyncio.current_task(), connection))
            try:
                yield
            finally:
                self._current.reset(token)

    def for_share(self) -> str:
        # inside a unit of work the rows checked stay as read until it commits
        return " FOR SHARE" if self.in_unit_of_work else ""

    def any_of(self, values: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
        return "= ANY(?)", (list(values),)

    def glob(self, column: str, patterns: Sequence[str]) -> tuple[str, tuple[Any, ...]]:
        if len(patterns) == 1:  # the planner can take an anchored expression's prefix to an index
            return f"{column} ~ ?", (glob_regex(patterns[0]),)
        return f"{column} ~ ANY(?)", ([glob_regex(pattern) for pattern in patterns],)

    async def write(self, text: str, args: Sequence[Any] = ()) -> int:
        async with self.connection() as connection:
            started = time.perf_counter()
            try:
                return (await connection.execute(sql(text), args)).rowcount
            finally:
                metrics.db_query(started)

    async def write_many(self, text: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            async with self.connection() as connection, connection.cursor() as cursor:
                started = time.perf_counter()
                try:
                    await cursor.executemany(sql(text), rows)
                finally:
                    metrics.db_query(started)

    async def lock_exclusive(self, table: str) -> None:
        await self.write(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")

    async def hold_locks(self, names: Iterable[str]) -> None:
        # transaction-level advisory locks on 64-bit hashes of the names, taken in one order: no deadlock
        keys = {int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)
                for name in names}
        for key in sorted(keys):
            await self.fetchone("SELECT pg_advisory_xact_lock(?)", (key,))

    async def check(self) -> None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                try:
                    await self.fetchall(_CHECK)
                except MetadataError:
                    # a database that restarted broke every idle connection in the pool, not only the one
                    # tried: test them all (the broken ones are replaced), then ask once more
                    pool = await self._opened()
                    with reported(self._what):
                        await pool.check()
                    await self.fetchall(_CHECK)
        except TimeoutError:
            raise MetadataError(f"{self._what}: the database did not answer within {CHECK_TIMEOUT:g} s") from None

    async def fetchone(self, text: str, args: Sequence[Any] = ()) -> Row | None:
        async with self.connection() as connection:
            started = time.perf_counter()
            try:
                cursor = await connection.execute(sql(text), args)
                return await cursor.fetchone()
            finally:
                metrics.db_query(started)

    async def fetchall(self, text: str, args: Sequence[Any] = ()) -> list[Row]:
        async with self.connection() as connection:
            started = time.perf_counter()
            try:
                cursor = await connection.execute(sql(text), args)
                return await cursor.fetchall()
            finally:
                metrics.db_query(started)

    async def aclose(self) -> None:
        if self._pool is not None and self._loop is not asyncio.get_running_loop():
            self._abandon()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
            if self._closer is not None:
                self._closer.cancel()

    def _abandon(self) -> None:
        """Drop a pool whose event loop is gone: its tasks cannot run, its connections are closed here."""
        assert self._pool is not None
        for connection in list(getattr(self._pool, "_pool", ())):
            connection.pgconn.finish()
        self._pool = None
