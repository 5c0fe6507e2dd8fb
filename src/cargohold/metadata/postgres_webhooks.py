"""The outbox's deliveries (``event_deliveries``, 0008) and the run-time webhook endpoints (0009) in PostgreSQL.

The statements and rows are SQLite's (:mod:`.sqlite_webhooks`). A claim locks the endpoint's head of line
with ``FOR UPDATE`` (not ``SKIP LOCKED``: deliveries go in event order, so a second deliverer waits for the
first's claim to commit, then sees the rows leased and takes none).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..events.model import Event
from ..events.outbox import Delivery, DeliveryState, NextDelivery
from ..memo import Memo
from .postgres_db import PostgresDatabase, sql
from .sqlite_webhooks import _SELECT, EVENTS, LINE, _delivery, claimed, due_run, known_events


async def next_delivery(db: PostgresDatabase, endpoint: str) -> NextDelivery | None:
    row = await db.fetchone(
        "SELECT id, next_attempt_at, locked_until FROM event_deliveries WHERE endpoint = ? AND state = 'pending'"
        " ORDER BY event_seq LIMIT 1",
        (endpoint,),
    )
    return None if row is None else NextDelivery(row[0], row[1], row[2])


async def claim_deliveries(
    db: PostgresDatabase, endpoint: str, holder: str, now: float, lease_until: float, limit: int,
    events: Memo[int, Event],
) -> list[Delivery]:
    async with db.atomic() as connection:
        cursor = await connection.execute(sql(f"{LINE} FOR UPDATE"), (endpoint, limit))
        run = due_run(await cursor.fetchall(), now)
        if not run:
            return []
        await connection.execute(
            "UPDATE event_deliveries SET locked_until = %s, locked_by = %s, attempts = attempts + 1 WHERE id = ANY(%s)",
            (lease_until, holder, [row[0] for row in run]),
        )
        known = known_events(run, events)
        unread = [seq for seq, event in known.items() if event is None]
        event_rows: list[Any] = []
        if unread:
            cursor = await connection.execute(sql(f"{EVENTS.removesuffix(' IN ')} = ANY(?)"), (unread,))
            event_rows = await cursor.fetchall()
    return claimed(endpoint, run, lease_until, known, event_rows, events)


async def finish_deliveries(
    db: PostgresDatabase, delivery_ids: Sequence[int], holder: str, *, delivered: bool, status: int | None,
    error: str | None, retry_at: float, max_attempts: int, now: float,
) -> int:
    if not delivery_ids:
        return 0
    cursor = await db.execute(
        "UPDATE event_deliveries SET"
        " state = CASE WHEN ?::boolean THEN 'delivered' WHEN attempts >= ?::integer THEN 'dead' ELSE 'pending' END,"
        " next_attempt_at = CASE WHEN ?::boolean OR attempts >= ?::integer THEN next_attempt_at"
        " ELSE ?::double precision END,"
        " delivered_at = CASE WHEN ?::boolean THEN ?::double precision END,"
        " last_status = ?, last_error = ?, locked_until = NULL, locked_by = NULL"
        " WHERE id = ANY(?) AND locked_by = ? AND state = 'pending'",
        (delivered, max_attempts, delivered, max_attempts, retry_at, delivered, now, status, error,
         list(delivery_ids), holder),
    )
    return cursor.rowcount


async def release_deliveries(db: PostgresDatabase, delivery_ids: Sequence[int], holder: str) -> None:
    if delivery_ids:
        await db.execute(
            "UPDATE event_deliveries SET locked_until = NULL, locked_by = NULL WHERE id = ANY(?) AND locked_by = ?",
            (list(delivery_ids), holder),
        )


async def deliveries(
    db: PostgresDatabase, endpoint: str | None, state: DeliveryState | None, limit: int, before: int | None,
) -> list[Delivery]:
    where: list[str] = ["d.id < ?"]
    args: list[Any] = [before if before is not None else 2**62]
    if endpoint is not None:
        where.append("d.endpoint = ?")
        args.append(endpoint)
    if state is not None:
        where.append("d.state = ?")
        args.append(str(state))
    rows = await db.fetchall(f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY d.id DESC LIMIT ?", (*args, limit))
    return [_delivery(row) for row in rows]


async def redeliver(db: PostgresDatabase, delivery_id: int, now: float) -> Delivery | None:
    async with db.atomic():
        cursor = await db.execute(
            "UPDATE event_deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?, locked_until = NULL,"
            " locked_by = NULL WHERE id = ? AND state = 'dead'",
            (now, delivery_id),
        )
        if cursor.rowcount != 1:
            return None
        row = await db.fetchone(f"{_SELECT} WHERE d.id = ?", (delivery_id,))
    return None if row is None else _delivery(row)


async def webhook_endpoints(db: PostgresDatabase) -> list[tuple[str, str]]:
    return [(row[0], row[1]) for row in await db.fetchall("SELECT name, settings FROM webhook_endpoints ORDER BY name")]


async def add_webhook_endpoint(db: PostgresDatabase, name: str, settings: str, now: float) -> bool:
    cursor = await db.execute(
        "INSERT INTO webhook_endpoints (name, settings, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
        (name, settings, now),
    )
    return cursor.rowcount == 1


async def remove_webhook_endpoint(db: PostgresDatabase, name: str, now: float) -> bool:
    async with db.atomic():
        if not (await db.execute("DELETE FROM webhook_endpoints WHERE name = ?", (name,))).rowcount:
            return False
        await db.execute(
            "UPDATE event_deliveries SET state = 'dead', last_error = 'the endpoint was removed',"
            " locked_until = NULL, locked_by = NULL WHERE endpoint = ? AND state = 'pending'",
            (name,),
        )
    return True
