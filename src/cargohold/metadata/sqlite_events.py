"""The event log and its outbox in SQLite (tables ``events`` and ``event_deliveries``, 0008_events.sql)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..events.audit import EventFilter, LoggedEvent
from ..events.model import Action, Event, Result
from .sqlite_db import SqliteDatabase

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


def insert_event(db: SqliteDatabase, event: Event, deliver_to: Sequence[str]) -> int:
    """Inside the caller's transaction (or alone, if it is one statement and there is none)."""
    with db.transaction():
        seq = db.execute(_INSERT_EVENT, _row(event)).lastrowid
        assert seq is not None
        if deliver_to:
            db.executemany(_INSERT_DELIVERY, [(seq, endpoint, event.at) for endpoint in dict.fromkeys(deliver_to)])
    return int(seq)


def insert_events(db: SqliteDatabase, events: Sequence[tuple[Event, Sequence[str]]]) -> None:
    """In order; the events no endpoint hears of (most of a batch of pulls) in one statement per run."""
    with db.transaction():
        plain: list[tuple[Any, ...]] = []
        for event, deliver_to in events:
            if not deliver_to:
                plain.append(_row(event))
                continue
            if plain:
                db.executemany(_INSERT_EVENT, plain)
                plain = []
            insert_event(db, event, deliver_to)
        if plain:
            db.executemany(_INSERT_EVENT, plain)


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


def select_events(db: SqliteDatabase, where: EventFilter, limit: int, before: int | None) -> list[LoggedEvent]:
    conditions: list[str] = []
    params: list[Any] = []
    if before is not None:
        conditions.append("seq < ?")
        params.append(before)
    if where.repository is not None:
        conditions.append("repository GLOB ?")
        params.append(where.repository)
    if where.actor is not None:
        conditions.append("actor = ?")
        params.append(where.actor)
    if where.action is not None:
        conditions.append("(action = ? OR action GLOB ?)")
        params += [where.action, where.action + ".*"]
    if where.since is not None:
        conditions.append("at >= ?")
        params.append(where.since)
    if where.until is not None:
        conditions.append("at < ?")
        params.append(where.until)
    if where.scope is not None:
        if not where.scope:
            return []
        # repository names hold no glob characters: a name matches itself, ns/* its namespace
        conditions.append("(" + " OR ".join("repository GLOB ?" for _ in where.scope) + ")")
        params += where.scope
    sql = f"SELECT {_COLUMNS} FROM events"
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    rows = db.execute(sql + " ORDER BY seq DESC LIMIT ?", (*params, limit)).fetchall()
    return [_event(row) for row in rows]


def delete_events(db: SqliteDatabase, older_than: float) -> int:
    """In batches of :data:`PURGE_BATCH`, each its own transaction; the deliveries done go with their event."""
    keep = " AND NOT EXISTS (SELECT 1 FROM event_deliveries d WHERE d.event_seq = e.seq AND d.state != 'delivered')"
    removed = 0
    while True:
        with db.transaction():
            seqs = [row[0] for row in db.execute(
                f"SELECT e.seq FROM events e WHERE e.at < ?{keep} ORDER BY e.seq LIMIT ?", (older_than, PURGE_BATCH),
            )]
            if seqs:
                marks = ",".join("?" * len(seqs))
                db.execute(f"DELETE FROM event_deliveries WHERE event_seq IN ({marks})", seqs)
                db.execute(f"DELETE FROM events WHERE seq IN ({marks})", seqs)
        removed += len(seqs)
        if len(seqs) < PURGE_BATCH:
            return removed
