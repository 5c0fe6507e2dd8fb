"""The MetadataStore contract, run against every implementation."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.metadata import MetadataStore, migrate, open_metadata_store
from cargohold.metadata.store import (
    ManifestRecord,
    MetadataError,
    NewManifest,
    StorePart,
    StoreUpload,
    UploadConflict,
)
from tests.support.postgres import BACKENDS, PostgresCluster, database_url, query


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request, tmp_path)


@pytest.fixture()
def meta(url: str) -> Iterator[MetadataStore]:
    store = open_metadata_store(url)
    yield store
    asyncio.run(store.close())


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def manifest(digest: str, *, subject: str | None = None, artifact: str | None = None) -> NewManifest:
    return NewManifest(digest, "application/vnd.oci.image.manifest.v1+json", b"{}", artifact, subject, None, ["b1"])


def test_repositories(meta: MetadataStore) -> None:
    async def scenario() -> None:
        assert await meta.repository_id("a/b") is None
        first = await meta.ensure_repository("a/b")
        assert await meta.ensure_repository("a/b") == first
        for name in ("c", "a/a", "b"):
            await meta.ensure_repository(name)
        assert await meta.list_repositories(None, None) == ["a/a", "a/b", "b", "c"]
        assert await meta.list_repositories(2, "a/b") == ["b", "c"]

    run(scenario())


def test_blob_links(meta: MetadataStore) -> None:
    async def scenario() -> None:
        one, two = await meta.ensure_repository("one"), await meta.ensure_repository("two")
        await meta.add_blob(one, "sha256:x", 5)
        await meta.add_blob(one, "sha256:x", 5)  # idempotent
        assert await meta.linked_blob_size("one", "sha256:x") == 5
        assert await meta.linked_blob_size("two", "sha256:x") is None
        assert await meta.link_blob(two, "sha256:x")
        assert await meta.link_blob(two, "sha256:x")
        assert not await meta.link_blob(two, "sha256:unknown")
        assert await meta.unlinked_blobs(two, ["sha256:x", "sha256:y"]) == {"sha256:y"}
        assert await meta.repositories_with_blob("sha256:x", None, None) == ["one", "two"]
        assert await meta.repositories_with_blob("sha256:x", 1, "one") == ["two"]
        assert await meta.repositories_with_blob("sha256:unknown", None, None) == []
        assert await meta.unlink_blob(two, "sha256:x")
        assert not await meta.unlink_blob(two, "sha256:x")
        assert await meta.blob_size("sha256:x") == 5

    run(scenario())


def test_concurrent_blob_lookups_each_get_their_own_answer(meta: MetadataStore) -> None:
    """Lookups at once (batched into one statement on PostgreSQL): every key its own answer, a repeated
    key and a missing one included, and an unlink before a lookup is seen by it."""
    async def scenario() -> None:
        one, two = await meta.ensure_repository("one"), await meta.ensure_repository("two")
        for i in range(100):
            await meta.add_blob(one if i % 2 else two, f"sha256:{i}", i + 1)
        keys = [("one" if i % 2 else "two", f"sha256:{i}") for i in range(100)]
        keys += [("two", "sha256:1"), ("one", "sha256:none"), ("nowhere", "sha256:3"), ("one", "sha256:1")]
        sizes = await asyncio.gather(*(meta.linked_blob_size(*key) for key in keys))
        assert sizes == [i + 1 for i in range(100)] + [None, None, None, 2]
        assert await meta.unlink_blob(one, "sha256:1")
        assert await asyncio.gather(*(meta.linked_blob_size("one", "sha256:1") for _ in range(3))) == [None] * 3

    run(scenario())


def test_manifests_tags_referrers(meta: MetadataStore) -> None:
    async def scenario() -> None:
        repo = await meta.ensure_repository("r")
        await meta.put_manifest(repo, manifest("sha256:m1"), ["v1"])
        await meta.put_manifest(repo, manifest("sha256:m2", subject="sha256:m1", artifact="sig"), [])
        await meta.put_manifest(repo, manifest("sha256:m3", subject="sha256:m1", artifact="sbom"), ["v2"])
        await meta.put_manifest(repo, manifest("sha256:m3"), ["v3"])
        assert (await meta.tagged_manifest("r", "v1")).digest == "sha256:m1"  # type: ignore[union-attr]
        assert await meta.tagged_manifest("other", "v1") is None
        assert await meta.list_tags("r", None, None) == ["v1", "v2", "v3"]
        assert await meta.list_tags("r", 1, "v1") == ["v2"]
        assert await meta.list_tags("r", None, "v9") == []  # past the last tag: an empty page, not no repository
        assert await meta.list_tags("other", None, None) is None
        # several tags move in one step, from wherever they pointed
        await meta.put_manifest(repo, manifest("sha256:m4"), ["v1", "v3", "v4"])
        assert [(await meta.tagged_manifest("r", t)).digest for t in ("v1", "v2", "v3", "v4")] == [  # type: ignore[union-attr]
            "sha256:m4", "sha256:m3", "sha256:m4", "sha256:m4"
        ]
        assert [r.digest for r in await meta.referrers(repo, "sha256:m1", None)] == ["sha256:m2", "sha256:m3"]
        assert [r.digest for r in await meta.referrers(repo, "sha256:m1", "sbom")] == ["sha256:m3"]
        assert await meta.missing_manifests(repo, ["sha256:m1", "sha256:zz"]) == {"sha256:zz"}
        assert await meta.delete_manifest(repo, "sha256:m3")
        assert await meta.list_tags("r", None, None) == ["v1", "v3", "v4"]
        assert not await meta.delete_manifest(repo, "sha256:m3")
        assert await meta.delete_tag(repo, "v1")
        assert await meta.manifest("r", "sha256:m1") is not None

    run(scenario())


def test_uploads(meta: MetadataStore) -> None:
    async def scenario() -> None:
        await meta.create_upload("u1", "up", "sha256")
        record = await meta.upload("u1")
        assert record is not None and (record.repository, record.size, record.hash_state) == ("up", 0, None)
        await meta.update_upload("u1", 0, 10, b"state")
        with pytest.raises(UploadConflict):
            await meta.update_upload("u1", 0, 20, b"other")
        record = await meta.upload("u1")
        assert record is not None and (record.size, record.hash_state) == (10, b"state")
        assert await meta.stale_uploads(record.updated_at + 1) == ["u1"]
        assert await meta.stale_uploads(record.updated_at - 1) == []
        await meta.delete_upload("u1")
        assert await meta.upload("u1") is None

    run(scenario())


def test_a_blob_stores_upload_parts_and_blob_keys(meta: MetadataStore) -> None:
    """Everything a replica needs to continue or finish another's S3 upload is in the database."""

    async def scenario() -> None:
        assert await meta.store_upload("u1") is None
        await meta.save_store_upload("u1", "multipart-1", 0)
        await meta.save_store_part("u1", StorePart(2, '"e2"', 5))
        await meta.save_store_part("u1", StorePart(1, '"e1"', 5))
        await meta.save_store_part("u1", StorePart(2, '"e2-retried"', 5))  # a retried request's part
        await meta.save_store_upload("u1", "multipart-1", 10)
        assert await meta.store_upload("u1") == StoreUpload(
            "multipart-1", 10, (StorePart(1, '"e1"', 5), StorePart(2, '"e2-retried"', 5)))
        await meta.save_store_upload("u2", "multipart-2", 0)
        assert sorted(await meta.store_upload_ids()) == ["u1", "u2"]
        await meta.delete_store_upload("u1")
        assert await meta.store_upload("u1") is None
        assert list(await meta.store_upload_ids()) == ["u2"]
        await meta.save_store_upload("u1", "multipart-3", 0)  # an id's parts went with it
        assert await meta.store_upload("u1") == StoreUpload("multipart-3", 0, ())
        await meta.delete_store_upload("u1")
        await meta.delete_store_upload("u2")

        assert await meta.store_blob_key("sha256:aa") is None
        assert await meta.claim_store_blob_key("sha256:aa", "uploads/u1/blob") == "uploads/u1/blob"
        assert await meta.claim_store_blob_key("sha256:aa", "uploads/u2/blob") == "uploads/u1/blob"  # first stands
        assert await meta.store_blob_key("sha256:aa") == "uploads/u1/blob"
        await meta.claim_store_blob_key("sha256:bb", "uploads/u3/blob")
        assert await meta.store_blob_keys() == {"uploads/u1/blob", "uploads/u3/blob"}
        await meta.delete_store_blob_key("sha256:aa")
        await meta.delete_store_blob_key("sha256:bb")
        assert await meta.store_blob_key("sha256:aa") is None
        assert await meta.store_blob_keys() == set()

    run(scenario())


class Abort(Exception):
    pass


def test_a_transaction_commits_together_or_not_at_all(meta: MetadataStore) -> None:
    async def scenario() -> None:
        await meta.create_upload("u1", "r", "sha256")
        await meta.begin_upload_commit("u1", 0, 5, "sha256:b")
        with pytest.raises(Abort):
            async with meta.transaction() as tx:
                repo = await tx.ensure_repository("r")
                await tx.add_blob(repo, "sha256:b", 5)
                await tx.put_manifest(repo, manifest("sha256:m1"), ["v1"])
                await tx.complete_upload("u1")
                assert await tx.linked_blob_size("r", "sha256:b") == 5  # its own writes are visible to it
                raise Abort
        assert await meta.repository_id("r") is None
        assert await meta.blob_size("sha256:b") is None
        assert await meta.manifest("r", "sha256:m1") is None
        assert not (await meta.upload("u1")).completed  # type: ignore[union-attr]
        async with meta.transaction() as tx:
            repo = await tx.ensure_repository("r")
            await tx.add_blob(repo, "sha256:b", 5)
            await tx.complete_upload("u1")
        assert await meta.linked_blob_size("r", "sha256:b") == 5
        assert (await meta.upload("u1")).completed  # type: ignore[union-attr]

    run(scenario())


def test_a_manifest_and_its_tags_are_stored_together(meta: MetadataStore) -> None:
    async def scenario() -> None:
        repo = await meta.ensure_repository("r")
        await meta.put_manifest(repo, manifest("sha256:m1"), ["v1", "v2"])
        # a tag that cannot be stored (NULL name) refuses the manifest and every other tag with it
        with pytest.raises(MetadataError):
            await meta.put_manifest(repo, manifest("sha256:m2"), ["v1", None])  # type: ignore[list-item]
        assert await meta.manifest("r", "sha256:m2") is None
        assert (await meta.tagged_manifest("r", "v1")).digest == "sha256:m1"  # type: ignore[union-attr]
        # inside a unit of work that fails later, the manifest and the moved tags are undone too
        with pytest.raises(Abort):
            async with meta.transaction() as tx:
                assert await tx.unlinked_blobs(repo, ["b1"]) == {"b1"}
                await tx.put_manifest(repo, manifest("sha256:m3"), ["v2", "v3"])
                raise Abort
        assert await meta.manifest("r", "sha256:m3") is None
        assert await meta.list_tags("r", None, None) == ["v1", "v2"]
        assert (await meta.tagged_manifest("r", "v2")).digest == "sha256:m1"  # type: ignore[union-attr]

    run(scenario())


def test_transactions_do_not_nest(meta: MetadataStore) -> None:
    async def scenario() -> None:
        async with meta.transaction() as tx:
            await tx.ensure_repository("kept")
            with pytest.raises(MetadataError):
                async with meta.transaction():
                    pass
        assert await meta.repository_id("kept") is not None  # the refusal did not end the outer one

    run(scenario())


def test_sqlite_refuses_another_tasks_statement_inside_a_transaction(tmp_path: Path) -> None:
    """The block of a unit of work must not yield to the event loop: another request's statement would join it
    (SQLite: one connection per process; PostgreSQL gives every unit of work a connection of its own)."""
    migrate(f"sqlite://{tmp_path / 'm.db'}")
    meta = open_metadata_store(f"sqlite://{tmp_path / 'm.db'}")

    async def scenario() -> None:
        async with meta.transaction() as tx:
            await tx.ensure_repository("mine")
            with pytest.raises(MetadataError):
                await asyncio.create_task(meta.ensure_repository("theirs"))
        assert await meta.repository_id("mine") is not None
        assert await meta.repository_id("theirs") is None
        await meta.ensure_repository("theirs")  # refused only while the transaction was open

    run(scenario())


def test_postgres_runs_another_tasks_statement_outside_a_transaction(postgres: PostgresCluster) -> None:
    """A task started inside a unit of work inherits its context, not its connection: what it writes
    is its own, and stays when the unit of work rolls back."""
    meta = open_metadata_store(postgres.migrated_database())

    async def scenario() -> None:
        with pytest.raises(Abort):
            async with meta.transaction() as tx:
                await tx.ensure_repository("mine")
                await asyncio.create_task(meta.ensure_repository("theirs"))
                raise Abort
        assert await meta.repository_id("mine") is None
        assert await meta.repository_id("theirs") is not None
        await meta.close()

    run(scenario())


def test_sqlite_migrations_are_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    for _ in range(2):
        migrate(f"sqlite://{path}")
    with sqlite3.connect(path) as db:
        versions = [row[0] for row in db.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == sorted(set(versions)) and versions[0] == 1


def test_one_holder_per_lease(meta: MetadataStore, url: str) -> None:
    """Two stores on one database (two processes) contend for a lease: one holds it until it expires."""
    other = open_metadata_store(url)

    async def scenario() -> None:
        assert await meta.acquire_lease("purge", "a", 60)
        assert not await other.acquire_lease("purge", "b", 60)
        assert await meta.acquire_lease("purge", "a", 60)  # renewed by its holder
        assert await other.acquire_lease("gc", "b", 60)  # another job's lease is its own
        assert not await meta.acquire_lease("gc", "a", 60)
        await other.release_lease("purge", "b")  # not b's to give up
        assert not await other.acquire_lease("purge", "b", 60)
        await meta.release_lease("purge", "a")
        assert await other.acquire_lease("purge", "b", 0.05)
        assert not await meta.acquire_lease("purge", "a", 60)
        await asyncio.sleep(0.1)  # b's lease expired unrenewed: a takes over
        assert await meta.acquire_lease("purge", "a", 60)
        assert not await other.acquire_lease("purge", "b", 60)
        await other.close()

    run(scenario())


def test_only_leases_expired_long_enough_are_dropped(meta: MetadataStore, url: str) -> None:
    """A live lease, and one that lapsed a moment ago (how a job is handed over), are never dropped."""
    def names() -> list[str]:
        return sorted(row[0] for row in query(url, "SELECT name FROM job_leases"))

    async def scenario() -> None:
        assert await meta.acquire_lease("old", "a", 0.05)
        await asyncio.sleep(0.5)
        assert await meta.acquire_lease("lapsed", "a", 0.05)
        assert await meta.acquire_lease("live", "a", 60)
        await asyncio.sleep(0.1)
        assert await meta.drop_expired_leases(0.3) == 1  # "old" expired ~0.55 s ago, "lapsed" ~0.05 s ago
        assert names() == ["lapsed", "live"]
        assert await meta.drop_expired_leases(0.3) == 0
        with pytest.raises(ValueError):
            await meta.drop_expired_leases(-1)
        assert await meta.drop_expired_leases(0) == 1
        assert names() == ["live"]
        assert not await meta.acquire_lease("live", "b", 60)  # still a's
        assert await meta.acquire_lease("old", "b", 60)  # a dropped lease is taken as a new one

    run(scenario())


def test_generated_manifests_are_kept_once_per_tag_and_source(meta: MetadataStore, url: str) -> None:
    """The first generated manifest kept for (tag, source) is the one every process gets; it goes with its source."""
    other = open_metadata_store(url)
    signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"
    first, second = ManifestRecord("sha256:g1", signed, b"first"), ManifestRecord("sha256:g1", signed, b"second")

    async def scenario() -> None:
        repo = await meta.ensure_repository("r")
        await meta.put_manifest(repo, manifest("sha256:m1"), ["v1"])
        assert await meta.generated_manifest("r", "v1", "sha256:m1") is None
        assert await meta.keep_generated_manifest(repo, "v1", "sha256:m1", first) == first
        # another process that generated at the same time gets the first one's bytes
        assert await other.keep_generated_manifest(repo, "v1", "sha256:m1", second) == first
        assert await other.generated_manifest("r", "v1", "sha256:m1") == first
        assert await other.generated_manifest_by_digest("r", "sha256:g1") == first
        assert await meta.generated_manifest("other", "v1", "sha256:m1") is None
        assert await meta.generated_manifest_by_digest("other", "sha256:g1") is None
        # the tag moved: a manifest from the new source is kept beside it
        await meta.put_manifest(repo, manifest("sha256:m2"), ["v1"])
        assert await meta.generated_manifest("r", "v1", "sha256:m2") is None
        moved = ManifestRecord("sha256:g2", signed, b"moved")
        assert await meta.keep_generated_manifest(repo, "v1", "sha256:m2", moved) == moved
        # deleting the source deletes what was generated from it, in the same step
        assert await meta.delete_manifest(repo, "sha256:m1")
        assert await meta.generated_manifest("r", "v1", "sha256:m1") is None
        assert await meta.generated_manifest_by_digest("r", "sha256:g1") is None
        assert await meta.generated_manifest_by_digest("r", "sha256:g2") == moved
        await other.close()

    run(scenario())


def test_two_writers_racing_on_one_upload_and_on_tags(url: str) -> None:
    """Two processes (stores) at once: one PATCH's size update wins and the other conflicts; two pushes
    moving the same 100 tags, listed in opposite orders, both succeed (no deadlock: tags are written in
    name order) and every tag ends on one push's manifest."""

    async def scenario() -> None:
        one, two = open_metadata_store(url), open_metadata_store(url)
        try:
            for n in range(10):
                await one.create_upload(f"u{n}", "r", "sha256")
                results = await asyncio.gather(one.update_upload(f"u{n}", 0, 10, b"one"),
                                               two.update_upload(f"u{n}", 0, 20, b"two"), return_exceptions=True)
                assert sorted(type(r).__name__ for r in results) == ["NoneType", "UploadConflict"], results
            repo = await one.ensure_repository("r")
            tags = [f"t{i:03d}" for i in range(100)]
            for n in range(5):
                await asyncio.gather(one.put_manifest(repo, manifest(f"sha256:a{n}"), tags),
                                     two.put_manifest(repo, manifest(f"sha256:b{n}"), tags[::-1]))
                found = {(await one.tagged_manifest("r", tag)).digest for tag in tags}  # type: ignore[union-attr]
                assert len(found) == 1, found
        finally:
            await one.close()
            await two.close()

    run(scenario())


def test_pull_times_only_move_forward_and_skip_what_is_not_stored(meta: MetadataStore) -> None:
    async def scenario() -> None:
        repo = await meta.ensure_repository("a/b")
        await meta.put_manifest(repo, manifest("sha256:m1"), ["t"])
        await meta.put_manifest(repo, manifest("sha256:m2"), [])
        await meta.record_pulls([("a/b", "sha256:m1", 100), ("a/b", "sha256:m2", 50),
                                 ("a/b", "sha256:none", 100), ("x/y", "sha256:m1", 100)])
        assert await meta.pulled_at("a/b", "sha256:m1") == 100
        await meta.record_pulls([("a/b", "sha256:m1", 90), ("a/b", "sha256:m2", 60)])  # another worker's, older
        assert await meta.pulled_at("a/b", "sha256:m1") == 100
        assert await meta.pulled_at("a/b", "sha256:m2") == 60
        assert await meta.pulled_at("a/b", "sha256:none") is None
        assert await meta.pulled_at("x/y", "sha256:m1") is None
        view = await meta.retention_view(repo)
        assert [(t.name, t.digest, t.pulled_at) for t in view.tags] == [("t", "sha256:m1", 100)]
        assert await meta.delete_manifest(repo, "sha256:m1")
        assert await meta.pulled_at("a/b", "sha256:m1") is None
        await meta.put_manifest(repo, manifest("sha256:m1"), ["t"])  # pushed again: never pulled yet
        assert await meta.pulled_at("a/b", "sha256:m1") is None

    run(scenario())
