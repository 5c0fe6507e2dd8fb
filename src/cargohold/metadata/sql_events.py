"""The event log and its outbox (tables ``events`` and ``event_deliveries``, 0008_events.sql)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..events.audit import EventFilter, LoggedEvent
from ..events.model import Action, Event, Result
from .sql import SqlDatabase, glob_escaped

_INSERT_EVENT = (
    "INSERT INTO events (id, at, action, result, actor, actor_kind, address, user_agent, request_id, host, method,"
    " repository, tag, digest, media_type, size, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_DELIVERY = (
    "INSERT INTO event_deliveries (event_seq, endpoint, state, attempts, next_attempt_at)"
    " VALUES (?, ?, 'pending', 0, ?)"
)


def _row(event: Event) -> tuple[Any, ...]:
    detail = json.dumps(dict(event.detail), sort_keys=True, separators=(",", ":")) if event.detail else "{}"
    return (
        event.id, event.at, str(event.action), str(event.result), event.actor, event.actor_kind, event.address,
        event.user_agent, event.request_id, event.host, event.method, event.repository, event.tag, event.digest,
        event.media_type, event.size, detail,
    )


async def insert_event(db: SqlDatabase, event: Event, deliver_to: Sequence[str]) -> int:
    """Inside the caller's transaction (or one of its own when there is none)."""
    async with db.atomic():
        row = await db.fetchone(_INSERT_EVENT + " RETURNING seq", _row(event))
        assert row is not None
        seq = int(row[0])
        if deliver_to:
            await db.write_many(_INSERT_DELIVERY, [(seq, endpoint, event.at) for endpoint in dict.fromkeys(deliver_to)])
    return seq


async def insert_events(db: SqlDatabase, events: Sequence[tuple[Event, Sequence[str]]]) -> None:
    """In order; the events no endpoint hears of (most of a batch of pulls) in one ``executemany`` per run."""
    async with db.atomic():
        plain: list[tuple[Any, ...]] = []
        for event, deliver_to in events:
            if not deliver_to:
                plain.append(_row(event))
                continue
            await db.write_many(_INSERT_EVENT, plain)
            plain = []
            await insert_event(db, event, deliver_to)
        await db.write_many(_INSERT_EVENT, plain)


_COLUMNS = (
    "seq, id, at, action, result, actor, actor_kind, address, user_agent, request_id, host, method,"
    " repository, tag, digest, media_type, size, detail"
)
#: rows deleted per transaction when purging: a writer never waits long behind the purge
PURGE_BATCH = 1000


def _event(row: Sequence[Any]) -> LoggedEvent:
    return LoggedEvent(int(row[0]), Event(
        id=row[1], at=float(row[2]), action=Action(row[3]), result=Result(row[4]), actor=row[5], actor_kind=row[6],
        address=row[7], user_agent=row[8], request_id=row[9], host=row[10], method=row[11], repository=row[12],
        tag=row[13], digest=row[14], media_type=row[15], size=None if row[16] is None else int(row[16]),
        detail=json.loads(row[17]),
    ))


async def select_events(db: SqlDatabase, where: EventFilter, limit: int, before: int | None) -> list[LoggedEvent]:
    conditions: list[str] = []
    params: list[Any] = []

    def condition(text: str, args: Sequence[Any]) -> None:
        conditions.append(text)
        params.extend(args)

    if before is not None:
        condition("seq < ?", (before,))
    if where.repository is not None:
        condition(*db.glob("repository", [where.repository]))
    if where.actor is not None:
        condition("actor = ?", (where.actor,))
    if where.action is not None:  # the action, or every action of that noun
        text, args = db.glob("action", [glob_escaped(where.action) + ".*"])
        condition(f"(action = ? OR {text})", (where.action, *args))
    if where.since is not None:
        condition("at >= ?", (where.since,))
    if where.until is not None:
        condition("at < ?", (where.until,))
    if where.scope is not None:
        if not where.scope:
            return []
        # repository names hold no glob characters: a name matches itself, ns/* its namespace
        condition(*db.glob("repository", where.scope))
    text = f"SELECT {_COLUMNS} FROM events"
    if conditions:
        text += " WHERE " + " AND ".join(conditions)
    rows = await db.fetchall(text + " ORDER BY seq DESC LIMIT ?", (*params, limit))
    return [_event(row) for row in rows]


async def delete_events(db: SqlDatabase, older_than: float) -> int:
    """In batches of :data:`PURGE_BATCH`, each its own transaction; the deliveries done go with their event."""
    keep = " AND NOT EXISTS (SELECT 1 FROM event_deliveries d WHERE d.event_seq = e.seq AND d.state != 'delivered')"
    removed = 0
    while True:
        async with db.atomic():
            seqs = [row[0] for row in await db.fetchall(
                f"SELECT e.seq FROM events e WHERE e.at < ?{keep} ORDER BY e.seq LIMIT ?{db.for_update_skip_locked}",
                (older_than, PURGE_BATCH),
            )]
            if seqs:
                among, args = db.any_of(seqs)
                await db.write(f"DELETE FROM event_deliveries WHERE event_seq {among}", args)
                await db.write(f"DELETE FROM events WHERE seq {among}", args)
        removed += len(seqs)
        if len(seqs) < PURGE_BATCH:
            return removed
