"""The readiness checks' cache: one probe in flight, each result (a failure too) reused for the period,
an answer cut off when a check hangs, and a storm of answers costing a probe per period."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

import pytest

from cargohold.service.readiness import ANSWER_SECONDS, CACHE_SECONDS, CachedCheck, Readiness


@dataclass
class Dependency:
    """A check that counts its probes: it takes ``seconds`` and fails with ``down`` while that is set."""

    seconds: float = 0.0
    down: str | None = None
    probes: int = 0
    running: int = 0
    most_running: int = 0

    async def check(self) -> None:
        self.probes += 1
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.running -= 1
        if self.down is not None:
            raise ConnectionError(self.down)


def test_concurrent_answers_await_the_one_probe_in_flight() -> None:
    database = Dependency(seconds=0.2)

    async def scenario() -> None:
        readiness = Readiness()
        readiness.add_check("database", database.check)
        answers = await asyncio.gather(*(readiness.failed() for _ in range(100)))
        assert answers == [{}] * 100
        assert (database.probes, database.most_running) == (1, 1)

    asyncio.run(scenario())


def test_a_result_is_reused_for_the_period_then_probed_again() -> None:
    database, blobs = Dependency(), Dependency()

    async def scenario() -> None:
        readiness = Readiness(period=0.3)
        readiness.add_check("database", database.check)
        readiness.add_check("blobs", blobs.check)
        assert await readiness.failed() == {}
        database.down = "connection refused"
        for _ in range(5):
            assert await readiness.failed() == {}
        assert (database.probes, blobs.probes) == (1, 1)
        await asyncio.sleep(0.35)
        assert await readiness.failed() == {"database": "connection refused"}
        assert (database.probes, blobs.probes) == (2, 2)

    asyncio.run(scenario())


def test_a_failure_is_reused_for_the_period_too() -> None:
    database = Dependency(down="connection refused")

    async def scenario() -> None:
        readiness = Readiness(period=0.3)
        readiness.add_check("database", database.check)
        assert await readiness.failed() == {"database": "connection refused"}
        database.down = None
        assert await readiness.failed() == {"database": "connection refused"}
        assert database.probes == 1
        await asyncio.sleep(0.35)
        assert await readiness.failed() == {}
        assert database.probes == 2

    asyncio.run(scenario())


def test_a_hanging_check_times_the_answer_out_and_its_probe_goes_on() -> None:
    database, blobs = Dependency(seconds=0.5, down="no route to host"), Dependency()

    async def scenario() -> None:
        readiness = Readiness(period=0.3, answer_seconds=0.1)
        readiness.add_check("database", database.check)
        readiness.add_check("blobs", blobs.check)
        started = time.monotonic()
        assert await readiness.failed() == {"database": "timed out: no answer within 0.1 s"}
        assert time.monotonic() - started < 0.3
        assert await readiness.failed() == {"database": "timed out: no answer within 0.1 s"}
        assert database.probes == 1, "a second probe started while the first was running"
        await asyncio.sleep(0.4)  # the probe ends: its own answer holds for the period
        assert await readiness.failed() == {"database": "no route to host"}
        assert (database.probes, blobs.probes) == (1, 2)  # blobs: probed again once its period passed

    asyncio.run(scenario())


def test_a_probe_that_never_ends_is_given_up_so_that_the_next_can_start() -> None:
    database = Dependency(seconds=3600)

    async def scenario() -> None:
        check = CachedCheck("database", database.check, period=0.0, limit=0.1)
        first = check.probe()
        assert first is not None and check.probe() is first
        assert await first == "timed out: no answer within 0.1 s"
        database.seconds = 0
        second = check.probe()
        assert second is not None and second is not first
        assert await second is None
        assert database.probes == 2

    asyncio.run(scenario())


def test_any_exception_fails_its_check_with_its_text_or_its_type() -> None:
    async def empty() -> None:
        raise RuntimeError()

    async def scenario() -> None:
        readiness = Readiness()
        readiness.add_check("blobs", empty)
        assert await readiness.failed() == {"blobs": "RuntimeError"}

    asyncio.run(scenario())


def test_a_check_name_is_taken_once() -> None:
    readiness = Readiness()
    readiness.add_check("database", Dependency().check)
    with pytest.raises(ValueError, match="database"):
        readiness.add_check("database", Dependency().check)


def test_a_storm_of_answers_costs_one_probe_per_period() -> None:
    """300 callers asking in a loop for about a second (the real constants) probe at most once per period."""
    database = Dependency(seconds=0.01)
    seconds = 1.2

    async def scenario() -> int:
        readiness = Readiness()
        readiness.add_check("database", database.check)
        answered = 0
        deadline = time.monotonic() + seconds

        async def caller() -> None:
            nonlocal answered
            while time.monotonic() < deadline:
                assert await readiness.failed() == {}
                answered += 1
                await asyncio.sleep(0.005)

        await asyncio.gather(*(caller() for _ in range(300)))
        return answered

    answered = asyncio.run(scenario())
    assert answered > 10_000
    assert 2 <= database.probes <= math.ceil(seconds / CACHE_SECONDS) + 1
    assert CACHE_SECONDS + ANSWER_SECONDS < 2, "an outage would take longer than 2 s to show"
