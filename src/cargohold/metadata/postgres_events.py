"""The event log and its outbox in PostgreSQL (tables ``events`` and ``event_deliveries``, 0008_events.sql).

The statements and rows are SQLite's (:mod:`.sqlite_events`); a repository glob is matched with a
regular expression (PostgreSQL has no GLOB).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..events.audit import EventFilter, LoggedEvent
from ..events.model import Event
from .postgres_db import PostgresDatabase, sql
from .sqlite_events import _COLUMNS, _INSERT_DELIVERY, _INSERT_EVENT, PURGE_BATCH, _event, _row


async def insert_event(db: PostgresDatabase, event: Event, deliver_to: Sequence[str]) -> int:
    """Inside the caller's transaction (or one of its own when there is none)."""
    async with db.atomic() as connection:
        cursor = await connection.execute(sql(_INSERT_EVENT + " RETURNING seq"), _row(event))
        row = await cursor.fetchone()
        assert row is not None
        seq = int(row[0])
        if deliver_to:
            async with connection.cursor() as many:
                await many.executemany(
                    sql(_INSERT_DELIVERY), [(seq, endpoint, event.at) for endpoint in dict.fromkeys(deliver_to)]
                )
    return seq


async def insert_events(db: PostgresDatabase, events: Sequence[tuple[Event, Sequence[str]]]) -> None:
    """In order; the events no endpoint hears of (most of a batch of pulls) in one pipelined executemany."""
    async with db.atomic() as connection:
        plain: list[tuple[Any, ...]] = []
        for event, deliver_to in events:
            if not deliver_to:
                plain.append(_row(event))
                continue
            if plain:
                async with connection.cursor() as many:
                    await many.executemany(sql(_INSERT_EVENT), plain)
                plain = []
            await insert_event(db, event, deliver_to)
        if plain:
            async with connection.cursor() as many:
                await many.executemany(sql(_INSERT_EVENT), plain)


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


async def select_events(db: PostgresDatabase, where: EventFilter, limit: int, before: int | None) -> list[LoggedEvent]:
    conditions: list[str] = []
    params: list[Any] = []
    if before is not None:
        conditions.append("seq < ?")
        params.append(before)
    if where.repository is not None:
        conditions.append("repository ~ ?")
        params.append(glob_regex(where.repository))
    if where.actor is not None:
        conditions.append("actor = ?")
        params.append(where.actor)
    if where.action is not None:
        conditions.append("(action = ? OR action LIKE ?)")
        params += [where.action, where.action.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + ".%"]
    if where.since is not None:
        conditions.append("at >= ?")
        params.append(where.since)
    if where.until is not None:
        conditions.append("at < ?")
        params.append(where.until)
    if where.scope is not None:
        if not where.scope:
            return []
        conditions.append("repository ~ ANY(?)")
        params.append([glob_regex(pattern) for pattern in where.scope])
    text = f"SELECT {_COLUMNS} FROM events"
    if conditions:
        text += " WHERE " + " AND ".join(conditions)
    rows = await db.fetchall(text + " ORDER BY seq DESC LIMIT ?", (*params, limit))
    return [_event(row) for row in rows]


async def delete_events(db: PostgresDatabase, older_than: float) -> int:
    """In batches of :data:`PURGE_BATCH`, each its own transaction; the deliveries done go with their event."""
    keep = " AND NOT EXISTS (SELECT 1 FROM event_deliveries d WHERE d.event_seq = e.seq AND d.state != 'delivered')"
    removed = 0
    while True:
        async with db.atomic() as connection:
            cursor = await connection.execute(
                sql(f"SELECT e.seq FROM events e WHERE e.at < ?{keep} ORDER BY e.seq LIMIT ? FOR UPDATE SKIP LOCKED"),
                (older_than, PURGE_BATCH),
            )
            seqs = [row[0] for row in await cursor.fetchall()]
            if seqs:
                await connection.execute("DELETE FROM event_deliveries WHERE event_seq = ANY(%s)", (seqs,))
                await connection.execute("DELETE FROM events WHERE seq = ANY(%s)", (seqs,))
        removed += len(seqs)
        if len(seqs) < PURGE_BATCH:
            return removed
