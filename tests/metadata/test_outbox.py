"""The outbox's contract on each backend's real database, two stores standing for two processes: an endpoint's next
delivery is claimed by one holder at a time, in event order; leases expire; outcomes belong to their claimant."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.events.model import Action, Event
from cargohold.events.outbox import DeliveryState
from cargohold.metadata import MetadataStore, open_metadata_store
from tests.support.postgres import BACKENDS, database_url


@pytest.fixture(params=BACKENDS)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[MetadataStore, MetadataStore]]:
    url = database_url(request, tmp_path)
    one, two = open_metadata_store(url), open_metadata_store(url)
    yield one, two
    asyncio.run(one.close())
    asyncio.run(two.close())


def _events(store: MetadataStore, count: int, endpoints: list[str]) -> list[Event]:
    events = [Event(Action.MANIFEST_PUSH, repository="r", tag=f"t{i}", at=100.0) for i in range(count)]

    async def add() -> None:
        for event in events:
            async with store.transaction() as tx:
                await tx.add_event(event, endpoints)

    asyncio.run(add())
    return events


def test_one_claimant_at_a_time_in_event_order(stores: tuple[MetadataStore, MetadataStore]) -> None:
    one, two = stores
    events = _events(one, 3, ["a", "b"])

    async def scenario() -> None:
        [first] = await one.claim_deliveries("a", "p1", now=200.0, lease_until=210.0, limit=1)
        assert first.event.id == events[0].id and first.attempts == 1
        assert first.event == events[0]  # read back as it was recorded
        assert await two.claim_deliveries("a", "p2", now=201.0, lease_until=211.0, limit=5) == []  # next in line
        [other] = await two.claim_deliveries("b", "p2", now=201.0, lease_until=211.0, limit=1)  # independent
        assert other.event.id == events[0].id
        assert await one.finish_deliveries([first.id], "p1", delivered=False, status=500, error="HTTP 500",
                                           retry_at=205.0, max_attempts=3, now=202.0) == 1
        assert await two.claim_deliveries("a", "p2", now=204.0, lease_until=214.0, limit=1) == []  # not due
        [again] = await two.claim_deliveries("a", "p2", now=205.0, lease_until=215.0, limit=1)
        assert again.id == first.id and again.attempts == 2
        # p2 dies mid-attempt; after its lease another takes the delivery over, and p2's outcome is refused
        assert await one.claim_deliveries("a", "p1", now=214.0, lease_until=224.0, limit=1) == []
        [taken] = await one.claim_deliveries("a", "p1", now=216.0, lease_until=226.0, limit=1)
        assert taken.id == first.id and taken.attempts == 3
        assert await two.finish_deliveries([first.id], "p2", delivered=True, status=200, error=None, retry_at=0.0,
                                           max_attempts=3, now=217.0) == 0
        assert await one.finish_deliveries([first.id], "p1", delivered=True, status=204, error=None, retry_at=0.0,
                                           max_attempts=3, now=217.0) == 1
        [following] = await two.claim_deliveries("a", "p2", now=218.0, lease_until=228.0, limit=1)
        assert following.event.id == events[1].id
        assert await two.finish_deliveries([following.id], "p2", delivered=False, status=None, error="down",
                                           retry_at=300.0, max_attempts=1, now=219.0) == 1
        listed = await one.deliveries("a", None, 10, None)
        assert [(d.event.id, d.state, d.attempts, d.last_status, d.last_error) for d in listed] == [
            (events[2].id, DeliveryState.PENDING, 0, None, None),
            (events[1].id, DeliveryState.DEAD, 1, None, "down"),
            (events[0].id, DeliveryState.DELIVERED, 3, 204, None),
        ]
        assert [d.id for d in await one.deliveries(None, DeliveryState.DEAD, 10, None)] == [following.id]
        assert await one.redeliver(listed[0].id, 300.0) is None  # only a dead one
        revived = await one.redeliver(following.id, 300.0)
        assert revived is not None and (revived.state, revived.attempts) == (DeliveryState.PENDING, 0)
        head = await one.next_delivery("a")
        assert head is not None and head.id == following.id  # back at the head of the line

    asyncio.run(scenario())


def test_a_batch_is_the_due_run_at_the_head_and_fails_together(stores: tuple[MetadataStore, MetadataStore]) -> None:
    one, two = stores
    events = _events(one, 5, ["a"])

    async def scenario() -> None:
        batch = await one.claim_deliveries("a", "p1", now=200.0, lease_until=210.0, limit=3)
        assert [d.event.id for d in batch] == [e.id for e in events[:3]] and {d.attempts for d in batch} == {1}
        assert await two.claim_deliveries("a", "p2", now=201.0, lease_until=211.0, limit=10) == []
        assert await one.finish_deliveries([d.id for d in batch], "p1", delivered=False, status=503, error="busy",
                                           retry_at=220.0, max_attempts=2, now=202.0) == 3
        # the failed three wait for their retry, and so does everything behind them
        assert await two.claim_deliveries("a", "p2", now=210.0, lease_until=230.0, limit=10) == []
        again = await two.claim_deliveries("a", "p2", now=220.0, lease_until=230.0, limit=10)
        assert [d.attempts for d in again] == [2, 2, 2, 1, 1]
        await two.finish_deliveries([d.id for d in again], "p2", delivered=False, status=503, error="busy",
                                    retry_at=240.0, max_attempts=2, now=221.0)
        states = [(d.state, d.next_attempt_at) for d in reversed(await one.deliveries("a", None, 10, None))]
        assert states == [(DeliveryState.DEAD, 220.0)] * 3 + [(DeliveryState.PENDING, 240.0)] * 2
        await two.release_deliveries([d.id for d in await two.claim_deliveries("a", "p2", 240.0, 250.0, 10)], "p2")
        assert len(await one.claim_deliveries("a", "p1", now=240.5, lease_until=250.0, limit=10)) == 2

    asyncio.run(scenario())


def test_removing_an_endpoint_kills_its_pending_deliveries(stores: tuple[MetadataStore, MetadataStore]) -> None:
    one, _ = stores

    async def scenario() -> None:
        assert await one.add_webhook_endpoint("rt", '{"name":"rt","url":"http://h/"}', 1.0)
        assert not await one.add_webhook_endpoint("rt", "{}", 2.0)
        assert await one.webhook_endpoints() == [("rt", '{"name":"rt","url":"http://h/"}')]

    asyncio.run(scenario())
    _events(one, 2, ["rt", "kept"])

    async def remove() -> None:
        assert await one.remove_webhook_endpoint("rt", 3.0)
        assert not await one.remove_webhook_endpoint("rt", 3.0)
        states = {(d.endpoint, d.state, d.last_error) for d in await one.deliveries(None, None, 10, None)}
        assert states == {("rt", DeliveryState.DEAD, "the endpoint was removed"), ("kept", DeliveryState.PENDING, None)}

    asyncio.run(remove())
