"""The event log and its outbox in SQLite (tables ``events`` and ``event_deliveries``, 0008_events.sql)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..events.model import Event
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
    return (
        event.id, event.at, str(event.action), str(event.result), event.actor, event.actor_kind, event.address,
        event.user_agent, event.request_id, event.host, event.method, event.repository, event.tag, event.digest,
        event.media_type, event.size, json.dumps(dict(event.detail), sort_keys=True, separators=(",", ":")),
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
    with db.transaction():
        for event, deliver_to in events:
            insert_event(db, event, deliver_to)
