"""Concurrent lookups as one statement (:mod:`cargohold.metadata.batching`): what is batched, and when."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest

from cargohold.metadata.batching import MAX_BATCH, Batched


class Table:
    """A lookup that takes a while, like a round trip, and records each statement's keys."""

    def __init__(self, rows: dict[str, int]):
        self.rows = rows
        self.statements: list[list[str]] = []
        self.fail = False

    async def fetch(self, keys: Sequence[str]) -> Mapping[str, int]:
        self.statements.append(list(keys))
        found = {key: self.rows[key] for key in keys if key in self.rows}  # as of the statement's start
        await asyncio.sleep(0.01)
        if self.fail:
            raise RuntimeError("database went away")
        return found


def test_a_lone_lookup_goes_at_once() -> None:
    async def scenario() -> None:
        table = Table({"a": 1})
        batched = Batched(table.fetch)
        assert await batched.get("a") == 1
        assert await batched.get("b") is None
        assert table.statements == [["a"], ["b"]]

    asyncio.run(scenario())


def test_lookups_that_arrive_together_share_statements_and_repeated_keys_are_asked_once() -> None:
    async def scenario() -> None:
        table = Table({str(i): i for i in range(10)})
        batched = Batched(table.fetch, in_flight=1)
        keys = [str(i % 10) for i in range(50)] + ["missing"]
        assert await asyncio.gather(*(batched.get(key) for key in keys)) == [i % 10 for i in range(50)] + [None]
        assert table.statements == [sorted(set(keys), key=keys.index)]

    asyncio.run(scenario())


def test_lookups_that_arrive_while_statements_run_wait_for_a_slot_and_go_together() -> None:
    async def scenario() -> None:
        table = Table({str(i): i for i in range(10)})
        batched = Batched(table.fetch, in_flight=1)
        first = asyncio.ensure_future(batched.get("0"))
        await asyncio.sleep(0.001)  # the first statement is out
        later = [asyncio.ensure_future(batched.get(str(i))) for i in range(1, 10)]
        assert [await first, *[await task for task in later]] == list(range(10))
        assert table.statements == [["0"], [str(i) for i in range(1, 10)]]

    asyncio.run(scenario())


def test_a_lookup_never_joins_a_statement_already_sent() -> None:
    """An answer is read after its request arrived: a change committed before it is seen."""
    async def scenario() -> None:
        table = Table({"a": 1})
        batched = Batched(table.fetch, in_flight=2)
        first = asyncio.ensure_future(batched.get("a"))
        await asyncio.sleep(0.001)
        del table.rows["a"]  # committed while the first statement runs, before the second lookup
        assert await asyncio.gather(first, batched.get("a")) == [1, None]
        assert table.statements == [["a"], ["a"]]

    asyncio.run(scenario())


def test_a_batch_is_bounded() -> None:
    async def scenario() -> None:
        table = Table({})
        batched = Batched(table.fetch, in_flight=1)
        await asyncio.gather(*(batched.get(str(i)) for i in range(3 * MAX_BATCH)))
        assert max(len(keys) for keys in table.statements) == MAX_BATCH
        assert sum(len(keys) for keys in table.statements) == 3 * MAX_BATCH

    asyncio.run(scenario())


def test_a_failure_reaches_every_waiter_and_the_next_lookup_is_asked_again() -> None:
    async def scenario() -> None:
        table = Table({"a": 1})
        batched = Batched(table.fetch)
        table.fail = True
        results = await asyncio.gather(*(batched.get(key) for key in "aab"), return_exceptions=True)
        assert all(isinstance(result, RuntimeError) for result in results)
        table.fail = False
        assert await batched.get("a") == 1

    asyncio.run(scenario())


def test_a_waiter_that_goes_away_leaves_the_answer_to_the_others() -> None:
    async def scenario() -> None:
        table = Table({"a": 1})
        batched = Batched(table.fetch)
        leaving = asyncio.ensure_future(batched.get("a"))
        staying = asyncio.ensure_future(batched.get("a"))
        await asyncio.sleep(0.001)
        leaving.cancel()
        assert await staying == 1
        with pytest.raises(asyncio.CancelledError):
            await leaving

    asyncio.run(scenario())


def test_each_event_loop_starts_afresh() -> None:
    table = Table({"a": 1})
    batched = Batched(table.fetch)
    for _ in range(2):  # a CLI command's second asyncio.run
        assert asyncio.run(batched.get("a")) == 1
