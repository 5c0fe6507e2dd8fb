"""Mirror jobs and runs on both metadata backends: stored and read back whole, names unique, due jobs in
order, a run recorded at its start and its end with the job's next run, runs gone with their job."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.metadata import MetadataStore, open_metadata_store
from cargohold.mirror.model import RUNS_KEPT, MirrorExists, MirrorJob, MirrorRun, MirrorUnknown
from tests.support.postgres import BACKENDS, database_url


@pytest.fixture(params=BACKENDS)
def meta(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    store = open_metadata_store(database_url(request, tmp_path))
    yield store
    asyncio.run(store.close())


JOB = MirrorJob("app", "127.0.0.1:5001/library/app", "mirror", tags="^1.4", interval_seconds=600.0,
                platforms=("linux/amd64", "linux/arm64"), with_referrers=True, only_signed=True, prune=False,
                username="puller", password_file="/run/secrets/upstream", insecure=True,
                created_at=100.0, next_run_at=100.0)


def test_jobs_round_trip_and_names_are_unique(meta: MetadataStore) -> None:
    async def scenario() -> None:
        assert await meta.mirrors() == []
        await meta.add_mirror(JOB)
        await meta.add_mirror(MirrorJob("other", "local/team/app", "backup.example:5000/copies",
                                        docker_config="/d.json", created_at=1.0, next_run_at=50.0))
        assert await meta.mirror("app") == JOB
        assert await meta.mirror("nope") is None
        with pytest.raises(MirrorExists):
            await meta.add_mirror(JOB)
        assert [j.name for j in await meta.mirrors()] == ["app", "other"]
        assert [j.name for j in await meta.due_mirrors(99.0)] == ["other"]
        assert [j.name for j in await meta.due_mirrors(100.0)] == ["other", "app"]  # the longest overdue first
        assert await meta.remove_mirror("other")
        assert not await meta.remove_mirror("other")
        assert [j.name for j in await meta.mirrors()] == ["app"]

    asyncio.run(scenario())


def test_a_run_is_recorded_at_its_start_and_end(meta: MetadataStore) -> None:
    async def scenario() -> None:
        await meta.add_mirror(JOB)
        started = await meta.start_mirror_run(MirrorRun("app", "schedule", 200.0))
        assert started.id > 0 and started.finished_at is None
        assert await meta.mirror_runs("app", 10) == [started]
        done = MirrorRun("app", "schedule", 200.0, 210.0, {"1.4.2": "sha256:" + "a" * 64},
                         {"2.0": "outside the tag filter"}, {"1.4.3": "manifest unknown"}, ("1.4.0",), id=started.id)
        await meta.finish_mirror_run(done, 240.0, 1)
        assert await meta.mirror_runs("app", 10) == [done]
        job = await meta.mirror("app")
        assert job is not None and (job.next_run_at, job.failures) == (240.0, 1)
        second = await meta.start_mirror_run(MirrorRun("app", "api", 300.0))
        assert [r.id for r in await meta.mirror_runs("app", 10)] == [second.id, started.id]
        assert [r.id for r in await meta.mirror_runs("app", 1)] == [second.id]
        with pytest.raises(MirrorUnknown):
            await meta.start_mirror_run(MirrorRun("gone", "api", 1.0))
        assert await meta.remove_mirror("app")
        assert await meta.mirror_runs("app", 10) == []
        await meta.finish_mirror_run(done, 1.0, 0)  # the job went meanwhile: nothing to record, no error

    asyncio.run(scenario())


def test_old_runs_are_dropped(meta: MetadataStore) -> None:
    async def scenario() -> None:
        await meta.add_mirror(JOB)
        first = await meta.start_mirror_run(MirrorRun("app", "schedule", 1.0))
        for n in range(RUNS_KEPT):
            last = await meta.start_mirror_run(MirrorRun("app", "schedule", 2.0 + n))
        runs = await meta.mirror_runs("app", RUNS_KEPT + 10)
        assert len(runs) == RUNS_KEPT and runs[0] == last and first.id not in {r.id for r in runs}

    asyncio.run(scenario())
