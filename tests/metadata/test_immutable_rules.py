"""Immutable tag rules in both metadata databases: a rule added while a push's unit of work holds the
rules it read waits for that push to commit, so no push that read the old rules commits after the new one."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from cargohold.immutable_tags import ImmutableRule
from cargohold.metadata import open_access_store, open_metadata_store
from cargohold.service.immutable import protected_tags
from tests.support.postgres import BACKENDS, database_url

DIGEST = "sha256:" + "a" * 64


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request, tmp_path)


def add_rule_elsewhere(url: str) -> tuple[ImmutableRule, float]:
    """Add a rule from another connection and event loop (as the admin CLI would), and when that returned."""

    async def add() -> ImmutableRule:
        access = open_access_store(url)
        try:
            async with access.transaction() as tx:
                return await tx.add_immutable_rule("prod/*", "v*", "root")
        finally:
            await access.close()

    rule = asyncio.run(add())
    return rule, time.monotonic()


def test_a_rule_added_during_a_push_waits_for_it(url: str) -> None:
    async def scenario() -> None:
        meta = open_metadata_store(url)
        try:
            async with meta.transaction() as tx:
                assert await protected_tags(tx, "prod/app", ["v1"], DIGEST) == {}
                adding = asyncio.create_task(asyncio.to_thread(add_rule_elsewhere, url))
                await asyncio.sleep(0.5)  # only the awaited sleep: nothing of another task joins the unit of work
                assert not adding.done(), "the rule was added while a push that read the rules was open"
                committed = time.monotonic()
            rule, added = await adding
            assert added >= committed
            async with meta.transaction() as tx:
                assert await protected_tags(tx, "prod/app", ["v1", "latest"], DIGEST) == {"v1": rule}
        finally:
            await meta.close()

    asyncio.run(scenario())
