"""What the SQL stores need of a database: the seam between their one copy of the SQL and each dialect.

The stores (:mod:`.sql_registry`, :mod:`.sql_access`, :mod:`.sql_events`, :mod:`.sql_webhooks`,
:mod:`.sql_logins`) write every statement once, with SQLite's ``?`` placeholders, in the SQL both
dialects agree on (``ON CONFLICT``, ``RETURNING``, ``CAST``, ``BOOLEAN`` columns given Python
booleans). A database (:class:`~.sqlite_db.SqliteDatabase`, :class:`~.postgres_db.PostgresDatabase`)
runs them and supplies the few fragments that differ: row locks (PostgreSQL's; SQLite's single
writer needs none), a list parameter, a glob, "no limit". PostgreSQL's placeholders are translated
once per statement text and cached, so statements are constant strings wherever a request is hot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

Row = tuple[Any, ...]


class SqlDatabase(Protocol):
    #: the LIMIT that is no limit (SQLite: -1; PostgreSQL: NULL)
    unlimited: int | None
    #: appended to a SELECT whose rows the transaction then changes: "" where one writer holds the whole
    #: database for the transaction (SQLite's BEGIN IMMEDIATE)
    for_update: str
    #: as :attr:`for_update`, passing over rows another transaction holds (a purge in batches)
    for_update_skip_locked: str
    #: a statement is a round trip to another process (PostgreSQL): concurrent lookups are worth
    #: batching (:mod:`.batching`); SQLite answers in the calling thread
    round_trips: bool

    def for_share(self) -> str:
        """Appended to a SELECT whose rows must stay as read until the open unit of work commits."""
        ...

    def any_of(self, values: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
        """``column <fragment>`` is true for any of ``values`` (not empty): the fragment and its arguments."""
        ...

    def glob(self, column: str, patterns: Sequence[str]) -> tuple[str, tuple[Any, ...]]:
        """A condition true where ``column`` matches any of ``patterns`` (SQLite's GLOB, case-sensitive,
        whole string): the condition and its arguments."""
        ...

    @property
    def in_unit_of_work(self) -> bool: ...

    async def fetchone(self, text: str, args: Sequence[Any] = ()) -> Row | None: ...

    async def fetchall(self, text: str, args: Sequence[Any] = ()) -> list[Row]: ...

    async def write(self, text: str, args: Sequence[Any] = ()) -> int:
        """Run a statement that returns no rows; how many rows it changed."""
        ...

    async def write_many(self, text: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run a statement once per row of arguments (none for no rows); call it inside :meth:`atomic`."""
        ...

    def atomic(self) -> AbstractAsyncContextManager[object]:
        """A transaction for a method that writes several rows; inside a unit of work, part of it."""
        ...

    def unit_of_work(self, read_only: bool = False) -> AbstractAsyncContextManager[None]:
        """One transaction for the block (see :mod:`.store`); nesting is refused. ``read_only``: it reads one
        snapshot and writes nothing (and takes no writer's lock)."""
        ...

    async def lock_exclusive(self, table: str) -> None:
        """In the open transaction, wait for every other that read ``table`` to end, and keep any from
        reading it until this one ends (SQLite's BEGIN IMMEDIATE did already)."""
        ...

    async def hold_locks(self, names: Iterable[str]) -> None:
        """Hold a lock on each name until the open unit of work ends, so units of work that name the same
        thing run one after the other (SQLite's BEGIN IMMEDIATE runs them so already)."""
        ...

    async def check(self) -> None:
        """Raise MetadataError unless the database answers now (for ``/readyz``), never hang."""
        ...

    async def aclose(self) -> None: ...


def glob_escaped(text: str) -> str:
    """A glob pattern that matches ``text`` alone."""
    return "".join(f"[{char}]" if char in "*?[" else char for char in text)
