"""The job runner against a real SQLite metadata database, two runners standing for two processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cargohold.jobs import Job, JobRunner, Leases, LeasesFailing
from cargohold.metadata import migrate, open_metadata_store
from cargohold.metadata.store import MetadataError


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


class FailingLeases:
    """The real store's leases, failing as a database that is down does while ``down`` is set."""

    def __init__(self, store: Leases):
        self.store = store
        self.down = False

    async def acquire_lease(self, name: str, holder: str, seconds: float) -> bool:
        if self.down:
            raise MetadataError("connection refused")
        return await self.store.acquire_lease(name, holder, seconds)

    async def release_lease(self, name: str, holder: str) -> None:
        await self.store.release_lease(name, holder)


def test_a_runner_whose_lease_tries_fail_for_longer_than_a_lease_is_not_ready(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'm.db'}"
    migrate(url)

    async def nothing() -> None:
        pass

    async def scenario() -> None:
        store = open_metadata_store(url)
        leases = FailingLeases(store)
        # leases of 1 s, tried every 0.25 s; a job without a lease is not concerned
        runner = JobRunner([Job("often", 0.5, nothing), Job("everywhere", 0.05, nothing, everywhere=True)], leases,
                           "first")
        runner.start()
        await asyncio.sleep(0.3)
        assert runner.lease_failure() is None
        leases.down = True
        await asyncio.sleep(0.3)  # tries failed, but the lease still holds
        assert runner.lease_failure() is None
        await runner.check_leases()
        await asyncio.sleep(1.0)
        failure = runner.lease_failure()
        assert failure is not None and failure.startswith("job often: no lease taken or renewed for ")
        assert failure.endswith(": connection refused")
        with pytest.raises(LeasesFailing, match="connection refused"):
            await runner.check_leases()
        leases.down = False
        await asyncio.sleep(0.4)  # the next try takes the lease again
        assert runner.lease_failure() is None
        await runner.stop()
        await store.close()

    asyncio.run(scenario())


def test_a_runner_that_is_refused_a_lease_another_holds_is_ready(tmp_path: Path) -> None:
    """Losing a lease to another process is how it should work: the database answers."""
    url = f"sqlite://{tmp_path / 'm.db'}"
    migrate(url)

    async def nothing() -> None:
        pass

    async def scenario() -> None:
        store = open_metadata_store(url)
        assert await store.acquire_lease("often", "other", 60)
        runner = JobRunner([Job("often", 0.1, nothing)], store, "first")
        runner.start()
        await asyncio.sleep(0.5)
        assert runner.lease_failure() is None
        await runner.stop()
        await store.close()

    asyncio.run(scenario())
