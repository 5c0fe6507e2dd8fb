"""The job runner against a real SQLite metadata database, two runners standing for two processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cargohold.jobs import Job, JobRunner
from cargohold.metadata import migrate, open_metadata_store


def test_a_long_run_keeps_its_lease_and_a_stopped_runner_releases_it(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'm.db'}"
    migrate(url)
    ran: list[str] = []

    def job(who: str, seconds: float) -> Job:
        async def run() -> None:
            ran.append(who)
            await asyncio.sleep(seconds)

        return Job("slow", 0.1, run)

    async def scenario() -> None:
        one, two = open_metadata_store(url), open_metadata_store(url)
        first = JobRunner([job("first", 0.6)], one, "first")  # a run lasts six intervals, three leases
        second = JobRunner([job("second", 0)], two, "second")
        first.start()
        await asyncio.sleep(0.05)
        second.start()
        await asyncio.sleep(0.5)
        assert ran == ["first"], "the lease lapsed during a long run"
        await second.stop()
        await first.stop()  # cancels the run and releases the lease: nobody waits for it to expire
        assert await two.acquire_lease("slow", "third", 60)
        await one.close()
        await two.close()

    asyncio.run(scenario())


def test_a_job_that_runs_everywhere_runs_in_every_runner_without_the_lease(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'm.db'}"
    migrate(url)
    ran: list[str] = []

    def job(who: str) -> Job:
        async def run() -> None:
            ran.append(who)
            await asyncio.sleep(10)

        return Job("everywhere", 0.1, run, everywhere=True)

    async def scenario() -> None:
        one, two = open_metadata_store(url), open_metadata_store(url)
        runners = [JobRunner([job("first")], one, "first"), JobRunner([job("second")], two, "second")]
        for runner in runners:
            runner.start()
        await asyncio.sleep(0.3)
        assert sorted(ran) == ["first", "second"]
        for runner in runners:
            await runner.stop()
        assert await two.acquire_lease("everywhere", "third", 60)  # nobody took it
        await one.close()
        await two.close()

    asyncio.run(scenario())


def test_a_dead_holder_is_replaced_within_a_lease_however_long_the_interval(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'm.db'}"
    migrate(url)
    ran: list[str] = []

    def job(who: str) -> Job:
        async def run() -> None:
            ran.append(who)

        return Job("hourly", 3600, run)

    # a replica killed while it holds an hourly job's lease is replaced within a minute
    assert job("any").lease_seconds() + job("any").try_seconds() < 60

    async def scenario() -> None:
        one, two = open_metadata_store(url), open_metadata_store(url)
        first = JobRunner([job("first")], one, "first", max_lease=0.6)
        first.start()
        await asyncio.sleep(0.1)
        second = JobRunner([job("second")], two, "second", max_lease=0.6)
        second.start()
        await asyncio.sleep(0.3)
        assert ran == ["first"]
        for task in first._tasks:  # the process dies: its lease is neither renewed nor released
            task.cancel()
        await asyncio.sleep(1.0)  # the lease lapses (0.6 s) and the second tries again (every 0.2 s)
        assert ran == ["first", "second"]
        await second.stop()
        await one.close()
        await two.close()

    asyncio.run(scenario())
