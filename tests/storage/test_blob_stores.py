"""The BlobStore contract, run against every implementation.

Each test leaves the store empty (checked in the fixture), so a test that
forgets to clean up, or a store that leaks upload files, fails.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cargohold.digest import Digest
from cargohold.storage import BlobStore, LocalFileServer, UploadMissing, open_blob_store
from cargohold.storage.driver import BlobMissing, UploadBusy
from cargohold.storage.hashing import ResumableHasher
from tests.support.requirements import require


@pytest.fixture(params=["filesystem"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    blob_store = open_blob_store(request.param, {"root": str(tmp_path / "store")})
    yield blob_store
    assert asyncio.run(blob_store.upload_ids()) == {}, "the test left upload sessions behind"


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def write(store: BlobStore, upload_id: str, offset: int, *parts: bytes) -> int:
    writer = await store.upload_writer(upload_id, offset)
    for part in parts:
        writer.write(part)
    return writer.close()


def test_upload_commit_read_delete(store: BlobStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 1)
    digest = Digest.of(data)

    async def scenario() -> None:
        await store.upload_start("u1")
        assert await write(store, "u1", 0, data[:1000]) == 1000
        assert await write(store, "u1", 1000, data[1000:]) == len(data)
        await store.upload_commit("u1", digest)
        assert await store.stat(digest) == len(data)
        assert await collect(store.read(digest)) == data
        assert await collect(store.read(digest, 10, 100)) == data[10:110]
        assert await collect(store.read(digest, len(data) - 5)) == data[-5:]
        assert await store.delete(digest)
        assert await store.stat(digest) is None
        assert not await store.delete(digest)

    run(scenario())


def test_missing_blob(store: BlobStore) -> None:
    with pytest.raises(BlobMissing):
        run(collect(store.read(Digest.of(b"absent"))))


def test_aborted_writer_keeps_previous_size(store: BlobStore) -> None:
    async def scenario() -> None:
        await store.upload_start("u2")
        await write(store, "u2", 0, b"kept")
        writer = await store.upload_writer("u2", 4)
        writer.write(b"dropped")
        writer.abort()
        assert await collect(store.upload_read("u2", 100)) == b"kept"
        await store.upload_delete("u2")

    run(scenario())


def test_writer_discards_bytes_past_the_recorded_offset(store: BlobStore) -> None:
    """A request that died after writing but before its size was recorded."""

    async def scenario() -> None:
        await store.upload_start("u3")
        await write(store, "u3", 0, b"0123456789")
        assert await write(store, "u3", 4, b"xy") == 6
        assert await collect(store.upload_read("u3", 100)) == b"0123xy"
        with pytest.raises(UploadMissing):
            await store.upload_writer("u3", 50)
        await store.upload_delete("u3")

    run(scenario())


def test_commit_of_an_existing_blob_keeps_it(store: BlobStore) -> None:
    data = b"same bytes twice"
    digest = Digest.of(data)

    async def scenario() -> None:
        for upload_id in ("a1", "a2"):
            await store.upload_start(upload_id)
            await write(store, upload_id, 0, data)
            await store.upload_commit(upload_id, digest)
        assert await collect(store.read(digest)) == data
        await store.delete(digest)

    run(scenario())


def test_unknown_and_unsafe_upload_ids(store: BlobStore) -> None:
    with pytest.raises(UploadMissing):
        run(store.upload_writer("never-started", 0))
    for bad in ("../escape", "a/b", ""):
        with pytest.raises(UploadMissing):
            run(store.upload_start(bad))


def test_upload_lock_has_one_holder(store: BlobStore) -> None:
    async def scenario() -> None:
        await store.upload_start("k1")
        held = await store.upload_lock("k1")
        with pytest.raises(UploadBusy):
            await store.upload_lock("k1")
        held.release()
        (await store.upload_lock("k1")).release()
        await store.upload_delete("k1")
        with pytest.raises(UploadMissing):
            await store.upload_lock("k1")

    run(scenario())


@pytest.mark.parametrize("store", ["filesystem"], indirect=True)  # the stores that serve local files
def test_local_file_capability(store: BlobStore) -> None:
    assert isinstance(store, LocalFileServer)
    data = b"local"
    digest = Digest.of(data)

    async def scenario() -> None:
        await store.upload_start("l1")
        await write(store, "l1", 0, data)
        await store.upload_commit("l1", digest)
        assert Path(store.local_path(digest)).read_bytes() == data
        await store.delete(digest)

    run(scenario())


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_resumable_hasher_matches_hashlib(algorithm: str) -> None:
    data = os.urandom(1_000_003)
    hasher = ResumableHasher(algorithm)
    hasher.update(data[:333])
    if ResumableHasher.resumable():
        state = hasher.state()
        assert state is not None
        hasher = ResumableHasher(algorithm, state)
    hasher.update(data[333:])
    assert hasher.digest() == Digest(algorithm, hashlib.new(algorithm, data).hexdigest())
    assert hasher.digest() == hasher.digest()  # reading the digest does not consume the state


def test_resumable_hasher_rejects_bad_state() -> None:
    require(ResumableHasher.resumable(), "no libcrypto: hash states cannot be saved")
    with pytest.raises(ValueError):
        ResumableHasher("sha256", b"short")
    with pytest.raises(ValueError):
        ResumableHasher("md5")
