"""Garbage collection against the changes it races, on SQLite and PostgreSQL with the filesystem store: a
re-push of a digest whose deletion is queued keeps its bytes, a commit in flight keeps its blob, and on
PostgreSQL a mount or a manifest push waits for a collection that holds the blob (or the collection for
them) and then sees what the other did."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cargohold.digest import Digest
from cargohold.metadata import MetadataStore, open_metadata_store
from cargohold.metadata.store import NewManifest
from cargohold.service.gc import Collector, GcOptions, GcReport
from cargohold.service.uploads import Uploads
from cargohold.storage.filesystem import FilesystemBlobStore
from tests.support.postgres import BACKENDS, database_url

DATA = b"bytes pushed again while their deletion waits " * 100
DIGEST = str(Digest.of(DATA))


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request, tmp_path)


@pytest.fixture()
def meta(url: str) -> Iterator[MetadataStore]:
    store = open_metadata_store(url)
    yield store
    asyncio.run(store.close())


async def _body() -> AsyncIterator[bytes]:
    yield DATA


async def push(uploads: Uploads, repository: str) -> None:
    record = await uploads.meta.upload(await uploads.start(repository))
    assert record is not None
    size, hasher = await uploads.append(record, _body(), final=True)
    await uploads.finish(record, Digest.parse(DIGEST), size, hasher)


def parts(meta: MetadataStore, tmp_path: Path) -> tuple[FilesystemBlobStore, Uploads, Collector]:
    store = FilesystemBlobStore(str(tmp_path / "blobs"))
    return store, Uploads(store, meta), Collector(meta, store, GcOptions(grace_period=0, untagged_grace_period=0))


def test_a_repush_while_the_deletion_waits_keeps_the_bytes(meta: MetadataStore, tmp_path: Path) -> None:
    store, uploads, collector = parts(meta, tmp_path)

    async def scenario() -> None:
        await push(uploads, "r")
        report = GcReport(False, time.time())
        await collector.review(report)
        assert report.blobs == {DIGEST: len(DATA)}  # the row is gone, the bytes wait for their deletion
        assert await store.stat(Digest.parse(DIGEST)) == len(DATA)
        await push(uploads, "r")  # finds the file in place and keeps it
        await collector.delete_objects(report)
        assert await store.stat(Digest.parse(DIGEST)) == len(DATA)
        assert await meta.linked_blob_size("r", DIGEST) == len(DATA)
        assert report.objects_deleted == 0

    asyncio.run(scenario())


def test_a_commit_in_flight_keeps_its_blob(meta: MetadataStore, tmp_path: Path) -> None:
    store, uploads, collector = parts(meta, tmp_path)

    async def scenario() -> None:
        await push(uploads, "r")
        # a second upload of the same bytes: its commit began and found them placed, then a collection runs
        record = await meta.upload(await uploads.start("r"))
        assert record is not None
        size, _ = await uploads.append(record, _body(), final=True)
        await meta.begin_upload_commit(record.id, record.size, size, DIGEST)
        await store.upload_commit(record.id, Digest.parse(DIGEST))
        report = await collector.run()
        assert report.blobs == {} and not report.errors
        committed = await meta.upload(record.id)
        assert committed is not None
        await uploads.finish_again(committed, Digest.parse(DIGEST))
        assert await store.stat(Digest.parse(DIGEST)) == len(DATA)
        assert await meta.linked_blob_size("r", DIGEST) == len(DATA)
        # once the commit is over and its grace too, nothing references it: collected
        assert (await collector.run()).blobs == {DIGEST: len(DATA)}
        assert await store.stat(Digest.parse(DIGEST)) is None

    asyncio.run(scenario())


@pytest.mark.parametrize("url", ["postgres"], indirect=True)
def test_a_mount_waits_for_the_collection_and_finds_nothing(meta: MetadataStore, tmp_path: Path) -> None:
    _, uploads, collector = parts(meta, tmp_path)

    async def scenario() -> None:
        await push(uploads, "source")
        target = await meta.ensure_repository("target")
        report = GcReport(False, time.time())
        async with meta.transaction() as tx:
            assert await tx.gc_due_blobs(int(time.time()), "", 10, True) == [DIGEST]
            await collector._review_blob(tx, DIGEST, report, None, None)
            mount = asyncio.create_task(meta.link_blob(target, DIGEST))
            await asyncio.sleep(0.5)
            assert not mount.done()  # waits for the collection
        assert await mount is False
        assert report.blobs == {DIGEST: len(DATA)}

    asyncio.run(scenario())


@pytest.mark.parametrize("url", ["postgres"], indirect=True)
def test_a_manifest_push_and_a_collection_one_after_the_other(meta: MetadataStore, tmp_path: Path) -> None:
    _, uploads, collector = parts(meta, tmp_path)
    manifest = NewManifest("sha256:" + "1" * 64, "application/vnd.oci.image.manifest.v1+json", b"{}", None, None,
                           None, [DIGEST])

    async def scenario() -> None:
        await push(uploads, "r")
        repository = await meta.ensure_repository("r")
        # the push first: the collection waits for it, then keeps the blob its manifest references
        async with meta.transaction() as tx:
            assert await tx.unlinked_blobs(repository, [DIGEST]) == set()
            collection = asyncio.create_task(collector.run())
            await asyncio.sleep(0.5)
            assert not collection.done()
            await tx.put_manifest(repository, manifest, ["v1"])
        assert (await collection).blobs == {}
        assert await meta.linked_blob_size("r", DIGEST) == len(DATA)
        # the collection first: a push that checks the blob meanwhile waits, then finds it gone
        await meta.put_manifest(repository, manifest, [])
        await meta.delete_manifest(repository, manifest.digest)
        report = GcReport(False, time.time())
        async with meta.transaction() as tx:
            assert await tx.gc_due_blobs(int(time.time()), "", 10, True) == [DIGEST]
            await collector._review_blob(tx, DIGEST, report, None, None)

            async def check() -> set[str]:
                async with meta.transaction() as pushing:
                    return await pushing.unlinked_blobs(repository, [DIGEST])

            checking = asyncio.create_task(check())
            await asyncio.sleep(0.5)
            assert not checking.done()
        assert await checking == {DIGEST}  # MANIFEST_BLOB_UNKNOWN
        assert report.blobs == {DIGEST: len(DATA)}

    asyncio.run(scenario())


@pytest.mark.parametrize("url", ["postgres"], indirect=True)
def test_a_tag_push_of_an_untagged_manifest_during_a_collection(meta: MetadataStore, tmp_path: Path) -> None:
    _, uploads, collector = parts(meta, tmp_path)
    manifest = NewManifest("sha256:" + "2" * 64, "application/vnd.oci.image.manifest.v1+json", b"{}", None, None,
                           None, [DIGEST])

    async def scenario() -> None:
        await push(uploads, "r")
        repository = await meta.ensure_repository("r")
        await meta.put_manifest(repository, manifest, [])  # untagged: due for review at once
        report = GcReport(False, time.time())
        async with meta.transaction() as tx:
            due = await tx.gc_due_manifests(int(time.time()), (0, ""), 10, True)
            assert due == [(repository, manifest.digest)]
            # the same manifest pushed with a tag meanwhile: it waits for the collection's claim
            pushing = asyncio.create_task(meta.put_manifest(repository, manifest, ["v1"]))
            await asyncio.sleep(0.5)
            assert await collector._review_manifest(tx, repository, manifest.digest, report, None)
        await pushing  # then stores it again
        assert await meta.tagged_manifest("r", "v1") is not None
        assert (await collector.run()).manifests == 0

    asyncio.run(scenario())


@pytest.mark.parametrize("url", ["postgres"], indirect=True)
def test_an_index_push_holding_a_child_does_not_wait_for_the_collection(meta: MetadataStore, tmp_path: Path) -> None:
    _, uploads, collector = parts(meta, tmp_path)
    child = NewManifest("sha256:" + "3" * 64, "application/vnd.oci.image.manifest.v1+json", b"{}", None, None,
                        None, [DIGEST])
    index = NewManifest("sha256:" + "4" * 64, "application/vnd.oci.image.index.v1+json", b"{}", None, None,
                        None, [child.digest])

    async def scenario() -> None:
        await push(uploads, "r")
        repository = await meta.ensure_repository("r")
        await meta.put_manifest(repository, child, [])  # untagged: due for review at once
        async with meta.transaction() as tx:
            assert await tx.missing_manifests(repository, [child.digest]) == set()  # share-locks the child
            # the collection passes over the child the push holds rather than wait for it
            report = await asyncio.wait_for(collector.run(), 10)
            assert report.manifests == 0 and report.blobs == {}
            await tx.put_manifest(repository, index, ["v1"])
        assert (await collector.run()).manifests == 0  # the child's review again: its index keeps it
        assert await meta.manifest("r", child.digest) is not None

    asyncio.run(scenario())
