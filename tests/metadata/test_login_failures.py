"""The LoginFailureStore contract, run against every implementation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cargohold.metadata import LoginFailureStore, open_login_failures
from tests.support.postgres import BACKENDS, database_url


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request, tmp_path)


def test_failures_are_counted_per_key_newest_first_within_the_window(url: str) -> None:
    async def scenario() -> None:
        store = open_login_failures(url)
        try:
            await store.record(["a", "b"], 10.0, 0.0)
            await store.record(["a"], 20.0, 0.0)
            await store.record(["a"], 30.5, 0.0)
            assert await store.recent("a", 0.0, 10) == [30.5, 20.0, 10.0]
            assert await store.recent("a", 0.0, 2) == [30.5, 20.0]  # the latest ``limit``
            assert await store.recent("a", 20.0, 10) == [30.5]  # later than ``since`` only
            assert await store.recent("b", 0.0, 10) == [10.0]
            assert await store.recent("c", 0.0, 10) == []
        finally:
            await store.close()

    asyncio.run(scenario())


def test_recording_forgets_old_failures_of_every_key(url: str) -> None:
    async def scenario() -> None:
        store = open_login_failures(url)
        try:
            await store.record(["a", "b"], 10.0, 0.0)
            await store.record(["a"], 20.0, 0.0)
            await store.record(["c"], 40.0, 20.0)  # forgets everything at or before 20
            assert await store.recent("a", 0.0, 10) == []
            assert await store.recent("b", 0.0, 10) == []
            assert await store.recent("c", 0.0, 10) == [40.0]
            await store.record([], 50.0, 0.0)  # a failure under no key changes nothing
            assert await store.recent("c", 0.0, 10) == [40.0]
        finally:
            await store.close()

    asyncio.run(scenario())


def test_every_worker_sees_the_same_counts(url: str) -> None:
    async def scenario() -> None:
        one: LoginFailureStore = open_login_failures(url)
        two: LoginFailureStore = open_login_failures(url)
        try:
            await one.record(["k"], 1.0, 0.0)
            await two.record(["k"], 2.0, 0.0)
            assert await one.recent("k", 0.0, 10) == await two.recent("k", 0.0, 10) == [2.0, 1.0]
        finally:
            await one.close()
            await two.close()

    asyncio.run(scenario())
