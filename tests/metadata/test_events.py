"""The audit log's contract (list_events, purge_events), run against every implementation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.events import Action, Event
from cargohold.events.audit import EventFilter
from cargohold.events.model import Result
from cargohold.metadata import MetadataStore, open_metadata_store
from tests.support.postgres import BACKENDS, database_url, query


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request, tmp_path)


@pytest.fixture()
def meta(url: str) -> Iterator[MetadataStore]:
    store = open_metadata_store(url)
    yield store
    asyncio.run(store.close())


def event(action: Action, repository: str = "", at: float = 1000.0, actor: str | None = "alice",
          **more: object) -> Event:
    return Event(action=action, repository=repository, at=at, actor=actor, actor_kind="user",
                 **more)  # type: ignore[arg-type]


SEEDED = [
    event(Action.MANIFEST_PUSH, "team/app", 1000.0, tag="v1", digest="sha256:a", media_type="m", size=10,
          detail={"tags": ["v1"], "previous": {"v1": "sha256:0"}}),
    event(Action.MANIFEST_PULL, "team/app", 1001.0, actor=None),
    event(Action.TAG_DELETE, "team/sub/deep", 1002.0, actor="bob"),
    event(Action.MANIFEST_PUSH, "other/app", 1003.0, actor="bob"),
    event(Action.LOGIN, "", 1004.0, actor="mallory", result=Result.DENIED),
    event(Action.BLOB_PUSH, "teams/app", 1005.0),
]


def seeded(meta: MetadataStore) -> list[int]:
    async def seed() -> list[int]:
        return [await meta.add_event(e) for e in SEEDED]

    return asyncio.run(seed())


def actions(found: list[object]) -> list[tuple[str, str]]:
    return [(str(e.event.action), e.event.repository) for e in found]  # type: ignore[attr-defined]


def test_entries_read_back_whole_newest_first(meta: MetadataStore) -> None:
    seqs = seeded(meta)
    found = asyncio.run(meta.list_events(EventFilter(), 100))
    assert [e.seq for e in found] == sorted(seqs, reverse=True)
    assert [e.event for e in reversed(found)] == SEEDED  # every field, the detail's JSON included


def test_filters(meta: MetadataStore) -> None:
    seeded(meta)

    def where(**kw: object) -> list[tuple[str, str]]:
        return actions(asyncio.run(meta.list_events(EventFilter(**kw), 100)))  # type: ignore[arg-type]

    # a glob: team/* is the namespace (deeper names too), not teams/
    assert where(repository="team/*") == [("tag.delete", "team/sub/deep"), ("manifest.pull", "team/app"),
                                          ("manifest.push", "team/app")]
    assert where(repository="team/app") == [("manifest.pull", "team/app"), ("manifest.push", "team/app")]
    assert where(actor="bob") == [("manifest.push", "other/app"), ("tag.delete", "team/sub/deep")]
    assert where(action="manifest.push") == [("manifest.push", "other/app"), ("manifest.push", "team/app")]
    assert where(action="manifest") == [("manifest.push", "other/app"), ("manifest.pull", "team/app"),
                                        ("manifest.push", "team/app")]
    assert where(action="login") == [("login", "")]
    assert where(since=1002.0, until=1004.0) == [("manifest.push", "other/app"), ("tag.delete", "team/sub/deep")]
    assert where(repository="team/*", actor="alice", action="manifest") == [("manifest.push", "team/app")]
    # a repository admin's scope: names and namespaces; entries of no repository are not in it
    assert where(scope=("other/app", "teams/*")) == [("blob.push", "teams/app"), ("manifest.push", "other/app")]
    assert where(scope=()) == []


def test_pages_follow_the_before_cursor(meta: MetadataStore) -> None:
    seqs = seeded(meta)
    first = asyncio.run(meta.list_events(EventFilter(), 4))
    assert [e.seq for e in first] == sorted(seqs, reverse=True)[:4]
    rest = asyncio.run(meta.list_events(EventFilter(), 4, first[-1].seq))
    assert [e.seq for e in rest] == sorted(seqs, reverse=True)[4:]
    filtered = asyncio.run(meta.list_events(EventFilter(actor="alice"), 1, seqs[-1]))
    assert [e.seq for e in filtered] == [seqs[0]]  # the cursor and the filters together


def test_purge_keeps_events_with_a_delivery_to_make(meta: MetadataStore, url: str) -> None:
    async def scenario() -> None:
        old_plain = await meta.add_event(event(Action.MANIFEST_PUSH, "a", 100.0))
        old_pending = await meta.add_event(event(Action.MANIFEST_PUSH, "a", 101.0), ["hook"])
        old_delivered = await meta.add_event(event(Action.MANIFEST_PUSH, "a", 102.0), ["hook"])
        old_dead = await meta.add_event(event(Action.MANIFEST_PUSH, "a", 103.0), ["hook"])
        recent = await meta.add_event(event(Action.MANIFEST_PUSH, "a", 5000.0))
        query(url, "UPDATE event_deliveries SET state = 'delivered' WHERE event_seq = ?", (old_delivered,))
        query(url, "UPDATE event_deliveries SET state = 'dead' WHERE event_seq = ?", (old_dead,))
        assert await meta.purge_events(1000.0) == 2
        left = {e.seq for e in await meta.list_events(EventFilter(), 100)}
        assert left == {old_pending, old_dead, recent}
        assert old_plain not in left
        rows = query(url, "SELECT event_seq, state FROM event_deliveries ORDER BY event_seq")
        assert rows == [(old_pending, "pending"), (old_dead, "dead")]  # the delivered one went with its event
        assert await meta.purge_events(1000.0) == 0

    asyncio.run(scenario())


def test_purge_goes_in_batches(meta: MetadataStore) -> None:
    async def scenario() -> None:
        await meta.add_events([(event(Action.MANIFEST_PULL, "a", float(i)), ()) for i in range(2500)])
        assert await meta.purge_events(2000.0) == 2000
        assert len(await meta.list_events(EventFilter(), 1000)) == 500

    asyncio.run(scenario())
