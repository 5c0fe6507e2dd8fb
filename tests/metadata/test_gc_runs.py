"""The record of garbage collection runs, on SQLite and PostgreSQL: newest first, the oldest dropped."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from cargohold.metadata import MetadataStore, open_metadata_store
from cargohold.metadata.gc_store import GcRunRecord
from tests.support.postgres import BACKENDS, database_url


@pytest.fixture(params=BACKENDS)
def meta(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    store = open_metadata_store(database_url(request, tmp_path))
    yield store
    asyncio.run(store.close())


def test_runs_are_listed_newest_first_and_the_oldest_dropped(meta: MetadataStore) -> None:
    async def scenario() -> list[GcRunRecord]:
        for number in range(4):
            run_id = await meta.gc_start_run(1000.0 + number, dry_run=number % 2 == 0)
            await meta.gc_finish_run(GcRunRecord(run_id, 1000.0 + number, 1001.5 + number, number % 2 == 0,
                                                 manifests=number, blobs=2, bytes_freed=10 * number, errors=0,
                                                 detail={"repositories": {"a/b": {"manifests": [str(number)]}}}))
        return await meta.gc_runs(10)

    with mock.patch("cargohold.metadata.sql_gc.KEPT_RUNS", 3):
        runs = asyncio.run(scenario())
    assert [run.manifests for run in runs] == [3, 2, 1]
    assert [run.dry_run for run in runs] == [False, True, False]
    assert runs[0].finished == 1004.5 and runs[0].bytes_freed == 30
    assert runs[0].detail == {"repositories": {"a/b": {"manifests": ["3"]}}}
