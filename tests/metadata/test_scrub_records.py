"""The scrub's rows on both metadata backends: the sample walks the blobs round and round, what names a
blob for the sweep, findings renewed, cleared and gone with their blob, the runs kept."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.metadata import MetadataStore, open_metadata_store, sql_scrub
from cargohold.scrub import CORRUPT, ScrubFinding, ScrubRun
from tests.support.postgres import BACKENDS, database_url, query


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request, tmp_path)


@pytest.fixture()
def meta(url: str) -> Iterator[MetadataStore]:
    store = open_metadata_store(url)
    yield store
    asyncio.run(store.close())


def _delete_blob(url: str, digest: str) -> None:
    """A blob row deleted as the registry's own connections delete rows (SQLite's foreign keys on)."""
    if url.startswith("sqlite://"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite://"), isolation_level=None)) as db:
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("DELETE FROM repository_blobs WHERE digest = ?", (digest,))
            db.execute("DELETE FROM blobs WHERE digest = ?", (digest,))
        return
    query(url, "DELETE FROM repository_blobs WHERE digest = ?", (digest,))
    query(url, "DELETE FROM blobs WHERE digest = ?", (digest,))


def test_the_sample_goes_round(meta: MetadataStore) -> None:
    async def scenario() -> None:
        assert await meta.scrub_sample(None, 10) == []
        repository = await meta.ensure_repository("r")
        for n in range(5):
            await meta.add_blob(repository, f"sha256:{n}", n)
        assert await meta.scrub_sample(None, 2) == [("sha256:0", 0), ("sha256:1", 1)]
        assert await meta.scrub_sample("sha256:1", 2) == [("sha256:2", 2), ("sha256:3", 3)]
        assert await meta.scrub_sample("sha256:3", 2) == [("sha256:4", 4), ("sha256:0", 0)]
        assert [d for d, _ in await meta.scrub_sample("sha256:2", 10)] == \
            ["sha256:3", "sha256:4", "sha256:0", "sha256:1", "sha256:2"]  # each once
        assert await meta.scrub_last_digest() is None
        await meta.add_scrub_run(ScrubRun(1.0, 2.0, "job", 2, 10, 0, None, "sha256:1"))
        assert await meta.scrub_last_digest() == "sha256:1"

    asyncio.run(scenario())


def test_what_names_a_blob_for_the_sweep(meta: MetadataStore) -> None:
    async def scenario() -> None:
        repository = await meta.ensure_repository("r")
        await meta.add_blob(repository, "sha256:stored", 1)
        await meta.create_upload("flight", "r", "sha256")
        await meta.begin_upload_commit("flight", 0, 1, "sha256:flight")
        await meta.create_upload("done", "r", "sha256")
        await meta.begin_upload_commit("done", 0, 1, "sha256:done")
        await meta.complete_upload("done")  # completed, yet its blob row is gone (deleted since)
        await meta.create_upload("open", "r", "sha256")
        asked = ["sha256:stored", "sha256:flight", "sha256:done", "sha256:none"]
        assert await meta.named_blobs(asked) == {"sha256:stored", "sha256:flight"}
        assert await meta.named_blobs([]) == set()

    asyncio.run(scenario())


def test_findings_are_renewed_cleared_and_gone_with_their_blob(url: str, meta: MetadataStore) -> None:
    async def scenario() -> None:
        repository = await meta.ensure_repository("r")
        for digest in ("sha256:a", "sha256:b", "sha256:c"):
            await meta.add_blob(repository, digest, 10)
        for digest in ("sha256:a", "sha256:b", "sha256:c", "sha256:unknown"):
            await meta.record_scrub_finding(ScrubFinding(digest, CORRUPT, 10, 9, "sha256:x", 100.0, 100.0))
        await meta.record_scrub_finding(ScrubFinding("sha256:a", CORRUPT, 10, 8, "sha256:y", 200.0, 200.0))
        found = await meta.scrub_findings()
        assert [f.digest for f in found] == ["sha256:a", "sha256:b", "sha256:c"]  # none for a blob without a row
        assert (found[0].found_size, found[0].found_digest, found[0].first_found_at, found[0].last_found_at) == \
            (8, "sha256:y", 100.0, 200.0)
        await meta.clear_scrub_findings(["sha256:b"])
        await meta.clear_scrub_findings([])
        _delete_blob(url, "sha256:c")
        assert [f.digest for f in await meta.scrub_findings()] == ["sha256:a"]

    asyncio.run(scenario())


def test_the_newest_runs_are_kept(meta: MetadataStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sql_scrub, "RUNS_KEPT", 3)

    async def scenario() -> None:
        for n in range(5):
            await meta.add_scrub_run(ScrubRun(float(n), float(n) + 1, "command", n, n * 10, 0, 0, f"sha256:{n}",
                                              "Unavailable: down" if n == 4 else None))
        runs = await meta.scrub_runs(10)
        assert [(r.checked, r.last_digest) for r in runs] == [(4, "sha256:4"), (3, "sha256:3"), (2, "sha256:2")]
        assert runs[0].error == "Unavailable: down" and runs[0].orphans_removed == 0
        assert len(await meta.scrub_runs(1)) == 1

    asyncio.run(scenario())
