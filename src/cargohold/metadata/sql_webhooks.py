"""The outbox's deliveries (``event_deliveries``, 0008) and the run-time webhook endpoints (0009).

A claim's look at an endpoint's head of line and its lease are one step against every other
deliverer: SQLite's BEGIN IMMEDIATE, PostgreSQL's ``FOR UPDATE`` on those rows (not ``SKIP
LOCKED``: deliveries go in event order, so a second deliverer waits for the first's claim to
commit, then sees the rows leased and takes none).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..events.model import Action, Event, Result
from ..events.outbox import Delivery, DeliveryState, NextDelivery
from ..memo import Memo
from .sql import SqlDatabase

_EVENT_COLUMNS = (
    "e.seq, e.id, e.at, e.action, e.result, e.actor, e.actor_kind, e.address, e.user_agent, e.request_id, e.host,"
    " e.method, e.repository, e.tag, e.digest, e.media_type, e.size, e.detail"
)
_DELIVERY_COLUMNS = (
    "d.id, d.endpoint, d.state, d.attempts, d.next_attempt_at, d.last_status, d.last_error, d.delivered_at,"
    " d.locked_until"
)
_SELECT = f"SELECT {_DELIVERY_COLUMNS}, {_EVENT_COLUMNS} FROM event_deliveries d JOIN events e ON e.seq = d.event_seq"


def _event(row: Sequence[Any]) -> Event:
    (event_id, at, action, result, actor, actor_kind, address, user_agent, request_id, host, method,
     repository, tag, digest, media_type, size, detail) = row
    return Event(
        action=Action(action), repository=repository, tag=tag, digest=digest, media_type=media_type, size=size,
        result=Result(result), detail=json.loads(detail), actor=actor, actor_kind=actor_kind, address=address,
        user_agent=user_agent, request_id=request_id, host=host, method=method, id=event_id, at=at,
    )


def _delivery(row: Sequence[Any]) -> Delivery:
    delivery_id, endpoint, state, attempts, next_at, status, error, delivered_at, locked_until, seq = row[:10]
    return Delivery(
        id=delivery_id, endpoint=endpoint, state=DeliveryState(state), attempts=attempts, next_attempt_at=next_at,
        event=_event(row[10:]), event_seq=seq, last_status=status, last_error=error, delivered_at=delivered_at,
        locked_until=locked_until,
    )


#: a claim's look at an endpoint's line of pending deliveries: all a claimed delivery needs but its event
LINE = (
    "SELECT id, event_seq, attempts, next_attempt_at, locked_until, last_status, last_error FROM event_deliveries"
    " WHERE endpoint = ? AND state = 'pending' ORDER BY event_seq LIMIT ?"
)
#: the events of claimed deliveries, by seq (those not read before)
EVENTS = f"SELECT e.seq, {_EVENT_COLUMNS.replace('e.seq, ', '')} FROM events e WHERE e.seq"


def due_run(line: Sequence[Sequence[Any]], now: float) -> list[Sequence[Any]]:
    """The deliveries at the head of a :data:`LINE` that are due at ``now`` and not leased: in event order,
    so the run ends at the first that is not."""
    run = []
    for row in line:
        next_at, locked_until = row[3], row[4]
        if next_at > now or (locked_until is not None and locked_until >= now):
            break
        run.append(row)
    return run


def known_events(run: Sequence[Sequence[Any]], events: Memo[int, Event]) -> dict[int, Event | None]:
    """The events of a claimed :func:`due_run` by seq, None for each ``events`` does not hold."""
    return {row[1]: events.get(row[1]) for row in run}


def claimed(
    endpoint: str, run: Sequence[Sequence[Any]], lease_until: float, known: dict[int, Event | None],
    event_rows: Sequence[Sequence[Any]], events: Memo[int, Event],
) -> list[Delivery]:
    """The deliveries of a claimed :func:`due_run`: their events are ``known`` or in ``event_rows`` (the
    :data:`EVENTS` of the unknown ones; kept in ``events`` for the other endpoints' deliveries of them)."""
    for row in event_rows:
        known[row[0]] = events.put(row[0], _event(row[1:]))
    deliveries = []
    for delivery_id, seq, attempts, next_at, _, status, error in run:
        event = known[seq]
        assert event is not None  # a delivery references its event (the foreign key)
        deliveries.append(Delivery(
            id=delivery_id, endpoint=endpoint, state=DeliveryState.PENDING, attempts=attempts + 1,
            next_attempt_at=next_at, event=event, event_seq=seq, last_status=status, last_error=error,
            locked_until=lease_until,
        ))
    return deliveries


async def next_delivery(db: SqlDatabase, endpoint: str) -> NextDelivery | None:
    row = await db.fetchone(
        "SELECT id, next_attempt_at, locked_until FROM event_deliveries WHERE endpoint = ? AND state = 'pending'"
        " ORDER BY event_seq LIMIT 1",
        (endpoint,),
    )
    return None if row is None else NextDelivery(row[0], row[1], row[2])


async def claim_deliveries(
    db: SqlDatabase, endpoint: str, holder: str, now: float, lease_until: float, limit: int,
    events: Memo[int, Event],
) -> list[Delivery]:
    async with db.atomic():  # the look and the claim are one step against every other deliverer
        run = due_run(await db.fetchall(LINE + db.for_update, (endpoint, limit)), now)
        if not run:
            return []
        among, ids = db.any_of([row[0] for row in run])
        await db.write(
            f"UPDATE event_deliveries SET locked_until = ?, locked_by = ?, attempts = attempts + 1 WHERE id {among}",
            (lease_until, holder, *ids),
        )
        known = known_events(run, events)
        unread = [seq for seq, event in known.items() if event is None]
        event_rows: list[Any] = []
        if unread:
            among, seqs = db.any_of(unread)
            event_rows = await db.fetchall(f"{EVENTS} {among}", seqs)
    return claimed(endpoint, run, lease_until, known, event_rows, events)


async def finish_deliveries(
    db: SqlDatabase, delivery_ids: Sequence[int], holder: str, *, delivered: bool, status: int | None,
    error: str | None, retry_at: float, max_attempts: int, now: float,
) -> int:
    if not delivery_ids:
        return 0
    among, ids = db.any_of(delivery_ids)
    # typed parameters: PostgreSQL cannot infer a CASE's types from its arguments
    return await db.write(
        "UPDATE event_deliveries SET"
        " state = CASE WHEN CAST(? AS BOOLEAN) THEN 'delivered' WHEN attempts >= CAST(? AS INTEGER) THEN 'dead'"
        " ELSE 'pending' END,"
        " next_attempt_at = CASE WHEN CAST(? AS BOOLEAN) OR attempts >= CAST(? AS INTEGER) THEN next_attempt_at"
        " ELSE CAST(? AS DOUBLE PRECISION) END,"
        " delivered_at = CASE WHEN CAST(? AS BOOLEAN) THEN CAST(? AS DOUBLE PRECISION) END,"
        " last_status = ?, last_error = ?, locked_until = NULL, locked_by = NULL"
        f" WHERE id {among} AND locked_by = ? AND state = 'pending'",
        (delivered, max_attempts, delivered, max_attempts, retry_at, delivered, now, status, error, *ids, holder),
    )


async def release_deliveries(db: SqlDatabase, delivery_ids: Sequence[int], holder: str) -> None:
    if delivery_ids:
        among, ids = db.any_of(delivery_ids)
        await db.write(
            f"UPDATE event_deliveries SET locked_until = NULL, locked_by = NULL WHERE id {among} AND locked_by = ?",
            (*ids, holder),
        )


async def deliveries(
    db: SqlDatabase, endpoint: str | None, state: DeliveryState | None, limit: int, before: int | None,
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


async def redeliver(db: SqlDatabase, delivery_id: int, now: float) -> Delivery | None:
    async with db.atomic():
        if await db.write(
            "UPDATE event_deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?, locked_until = NULL,"
            " locked_by = NULL WHERE id = ? AND state = 'dead'",
            (now, delivery_id),
        ) != 1:
            return None
        row = await db.fetchone(f"{_SELECT} WHERE d.id = ?", (delivery_id,))
    return None if row is None else _delivery(row)


async def pending_deliveries(db: SqlDatabase) -> int:
    row = await db.fetchone("SELECT COUNT(*) FROM event_deliveries WHERE state = 'pending'")
    return int(row[0]) if row is not None else 0


async def webhook_endpoints(db: SqlDatabase) -> list[tuple[str, str]]:
    return [(row[0], row[1]) for row in await db.fetchall("SELECT name, settings FROM webhook_endpoints ORDER BY name")]


async def add_webhook_endpoint(db: SqlDatabase, name: str, settings: str, now: float) -> bool:
    return await db.write(
        "INSERT INTO webhook_endpoints (name, settings, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
        (name, settings, now),
    ) == 1


async def remove_webhook_endpoint(db: SqlDatabase, name: str, now: float) -> bool:
    async with db.atomic():
        if not await db.write("DELETE FROM webhook_endpoints WHERE name = ?", (name,)):
            return False
        await db.write(
            "UPDATE event_deliveries SET state = 'dead', last_error = 'the endpoint was removed',"
            " locked_until = NULL, locked_by = NULL WHERE endpoint = ? AND state = 'pending'",
            (name,),
        )
    return True
