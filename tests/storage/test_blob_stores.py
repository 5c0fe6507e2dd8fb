"""The BlobStore contract, run against every implementation.

Each test leaves the store empty (checked in the fixture), so a test that
forgets to clean up, or a store that leaks uploads or blobs, fails.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cargohold.digest import Digest
from cargohold.errcodes import SizeInvalid
from cargohold.metadata import migrate, open_metadata_store
from cargohold.metadata.store import StorePart
from cargohold.storage import (
    DURABLE,
    BlobStore,
    LocalFileServer,
    UnreadableHashState,
    UploadMissing,
    UploadReader,
    open_blob_store,
)
from cargohold.storage import filesystem as filesystem_module
from cargohold.storage.driver import BlobMissing, UploadBusy
from cargohold.storage.filesystem import FilesystemBlobStore
from cargohold.storage.hashing import ResumableHasher
from cargohold.storage.memory import MemoryBlobStore
from cargohold.storage.s3 import S3BlobStore
from tests.support.requirements import require
from tests.support.seaweedfs import SeaweedFS
from tests.support.swift import Swift

#: the S3 store on each S3 implementation: SeaweedFS, and OpenStack Swift's S3 API
S3_STORES = ["s3", "s3-swift"]
STORES = ["filesystem", "memory", *S3_STORES]
MiB = 1024 * 1024


def open_store(driver: str, root: Path, request: pytest.FixtureRequest, **s3_options: object) -> BlobStore:
    """The store ``driver`` over ``root`` (s3: a key prefix and a metadata database named by ``root``;
    ``s3`` on SeaweedFS, ``s3-swift`` on Swift)."""
    if driver not in S3_STORES:
        return open_blob_store(driver, {"root": str(root)})
    server: SeaweedFS | Swift = request.getfixturevalue("swift" if driver == "s3-swift" else "seaweedfs")
    marker = root / "prefix"
    if not marker.exists():
        root.mkdir(parents=True)
        marker.write_text(server.prefix())
        migrate(f"sqlite://{root / 'm.db'}")
    state = open_metadata_store(f"sqlite://{root / 'm.db'}")
    return open_blob_store("s3", server.options(marker.read_text(), **s3_options), state)


def blobs_left(store: BlobStore) -> list[str]:
    if isinstance(store, FilesystemBlobStore):
        return [str(path) for path in Path(store.root, "blobs").rglob("*") if not path.is_dir()]
    if isinstance(store, S3BlobStore):
        listing = store._client.list_objects_v2(Bucket=store.bucket, Prefix=store.prefix)
        return [str(item["Key"]) for item in listing.get("Contents", [])]
    assert isinstance(store, MemoryBlobStore)
    return [str(digest) for digest in store._blobs]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    blob_store = open_store(request.param, tmp_path / "store", request)
    yield blob_store
    assert asyncio.run(blob_store.upload_ids()) == {}, "the test left upload sessions behind"
    assert blobs_left(blob_store) == [], "the test left blobs behind"


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def write(store: BlobStore, upload_id: str, offset: int, *parts: bytes) -> int:
    """One request's writes, from a worker thread as the service makes them."""
    writer = await store.upload_writer(upload_id, offset)
    for part in parts:
        await asyncio.to_thread(writer.write, part)
    return (await asyncio.to_thread(writer.close)).size


async def held(store: BlobStore, upload_id: str, expected: bytes) -> bytes:
    """What an upload holds, found without reading it back: commit it under the digest of the
    ``expected`` bytes (stores do not verify) and read the blob, which is then deleted."""
    digest = Digest.of(expected)
    await store.upload_commit(upload_id, digest)
    stored = await collect(store.read(digest))
    await store.delete(digest)
    return stored


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


def test_requests_of_every_size_around_a_part_make_the_blob(store: BlobStore) -> None:
    """Requests of 0, 1, 5 MiB - 1, 5 MiB, 5 MiB + 1 bytes, one whole part and 3.5 parts (S3: parts of
    5 MiB, so parts fill across requests, a tail carries over, and a request ends on a boundary)."""
    sizes = [0, 1, 5 * MiB - 1, 5 * MiB, 5 * MiB + 1, 5 * MiB, 35 * MiB // 2]
    data = os.urandom(sum(sizes))
    digest = Digest.of(data)

    async def scenario() -> None:
        await store.upload_start("c1")
        offset = 0
        for size in sizes:
            assert await write(store, "c1", offset, data[offset:offset + size]) == offset + size
            offset += size
        await store.upload_commit("c1", digest)
        assert await store.stat(digest) == len(data)
        assert await collect(store.read(digest)) == data
        assert await collect(store.read(digest, 5 * MiB - 3, 7)) == data[5 * MiB - 3:5 * MiB + 4]
        assert await store.delete(digest)

    run(scenario())


def test_a_retried_request_rewrites_its_parts(store: BlobStore) -> None:
    """A request that died after writing whole parts, before its size was recorded, is sent again."""
    data = os.urandom(12 * MiB)
    digest = Digest.of(data)

    async def scenario() -> None:
        await store.upload_start("c2")
        assert await write(store, "c2", 0, data[:3 * MiB]) == 3 * MiB
        assert await write(store, "c2", 3 * MiB, os.urandom(9 * MiB)) == 12 * MiB  # lost before recorded
        assert await write(store, "c2", 3 * MiB, data[3 * MiB:]) == 12 * MiB
        await store.upload_commit("c2", digest)
        assert await collect(store.read(digest)) == data
        assert await store.delete(digest)

    run(scenario())


def test_one_blob_pushed_twice_at_once_is_stored_once(store: BlobStore) -> None:
    data = os.urandom(6 * MiB)
    digest = Digest.of(data)

    async def push(upload_id: str) -> None:
        await store.upload_start(upload_id)
        await write(store, upload_id, 0, data)
        await store.upload_commit(upload_id, digest)

    async def scenario() -> None:
        await asyncio.gather(push("d1"), push("d2"))
        assert await collect(store.read(digest)) == data
        assert await store.delete(digest)

    run(scenario())


@pytest.mark.parametrize("store", S3_STORES, indirect=True)
def test_s3_refuses_a_blob_over_ten_thousand_parts_with_its_size(store: BlobStore, tmp_path: Path) -> None:
    """part_size x 10,000 is the largest multipart upload: an upload 10 bytes short of it takes 10 more, not 11."""
    assert isinstance(store, S3BlobStore)
    part = store.part_size
    limit = part * 10_000
    tail = os.urandom(part - 10)
    state = open_metadata_store(f"sqlite://{tmp_path / 'store' / 'm.db'}")

    async def scenario() -> None:
        await store.upload_start("big")
        # an upload of 9,999 recorded parts (only its last is uploaded, to a real session) and its tail
        session = store._client.create_multipart_upload(Bucket=store.bucket, Key=store._blob_key("big"))["UploadId"]
        await state.save_store_upload("big", session, limit - 10)
        for number in range(1, 10_000):
            await state.save_store_part("big", StorePart(number, f'"{number}"', part))
        store._client.put_object(Bucket=store.bucket, Key=store._tail_key("big", limit - 10), Body=tail)
        writer = await store.upload_writer("big", limit - 10)
        with pytest.raises(SizeInvalid, match=f"larger than this registry's S3 storage takes: {limit} bytes"):
            await asyncio.to_thread(writer.write, os.urandom(11))
        await asyncio.to_thread(writer.write, os.urandom(10))
        await asyncio.to_thread(writer.abort)
        await store.upload_delete("big")

    run(scenario())


@pytest.mark.parametrize("store", S3_STORES, indirect=True)
def test_s3_upload_lock_holds_across_replicas(store: BlobStore, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Two stores on one database and bucket (two replicas): the lock is the database's; a writer whose
    request outlived its lock records nothing more."""
    replica = open_store(request.node.callspec.params["store"], tmp_path / "store", request)

    async def scenario() -> None:
        await store.upload_start("x1")
        held = await store.upload_lock("x1")
        with pytest.raises(UploadBusy):
            await replica.upload_lock("x1")
        writer = await store.upload_writer("x1", 0)
        await asyncio.to_thread(writer.write, b"late")
        await held.release()
        await asyncio.sleep(0)  # the release is a task
        await (await replica.upload_lock("x1")).release()  # another request took it and gave it up
        taken = await replica.upload_lock("x1")
        with pytest.raises(UploadBusy):
            await asyncio.to_thread(writer.close)
        await taken.release()
        await asyncio.sleep(0)
        await store.upload_delete("x1")

    run(scenario())


@pytest.mark.parametrize("store", S3_STORES, indirect=True)
def test_s3_sweep_removes_what_no_row_names_once_old(
        store: BlobStore, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """What a crash can leave (a completed object whose claim lost, a dropped upload's tail, a
    multipart upload begun but not recorded, or replaced by a later one) goes once older than the
    grace; blobs, live uploads and keys that are not the store's stay."""
    assert isinstance(store, S3BlobStore)
    client, bucket, prefix = store._client, store.bucket, store.prefix
    blob, live = os.urandom(1000), os.urandom(5 * MiB + 10)
    driver = request.node.callspec.params["store"]

    def multipart() -> list[tuple[str, str]]:
        listing = client.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
        return sorted((str(item["Key"]), str(item["UploadId"])) for item in listing.get("Uploads", []))

    async def scenario() -> None:
        await store.upload_start("b1")
        await write(store, "b1", 0, blob)
        await store.upload_commit("b1", Digest.of(blob))
        await store.upload_start("live")
        await write(store, "live", 0, live)
        session = multipart()
        client.put_object(Bucket=bucket, Key=f"{prefix}blobs/lost", Body=b"the loser of a race")
        client.put_object(Bucket=bucket, Key=f"{prefix}uploads/gone/tail-5", Body=b"12345")
        client.create_multipart_upload(Bucket=bucket, Key=f"{prefix}blobs/gone")
        client.create_multipart_upload(Bucket=bucket, Key=f"{prefix}blobs/live")
        client.put_object(Bucket=bucket, Key=f"{prefix}elsewhere", Body=b"not the store's")
        everything = sorted(blobs_left(store)), multipart()
        young = open_store(driver, tmp_path / "store", request, orphan_grace_seconds=3600)
        assert isinstance(young, S3BlobStore)
        assert await young.sweep() == 0
        assert (sorted(blobs_left(store)), multipart()) == everything
        await asyncio.sleep(1.1)  # listings name whole seconds
        old = open_store(driver, tmp_path / "store", request, orphan_grace_seconds=0)
        assert isinstance(old, S3BlobStore)
        assert await old.sweep() == 4
        assert sorted(blobs_left(store)) == sorted([
            f"{prefix}blobs/b1", f"{prefix}elsewhere", f"{prefix}uploads/live/tail-{len(live)}"])
        assert multipart() == session
        assert await collect(store.read(Digest.of(blob))) == blob
        client.delete_object(Bucket=bucket, Key=f"{prefix}elsewhere")
        await store.delete(Digest.of(blob))
        await store.upload_delete("live")
        assert multipart() == []

    run(scenario())


def test_missing_blob(store: BlobStore) -> None:
    with pytest.raises(BlobMissing):
        run(collect(store.read(Digest.of(b"absent"))))


def test_aborted_writer_keeps_previous_size(store: BlobStore) -> None:
    async def scenario() -> None:
        await store.upload_start("u2")
        await write(store, "u2", 0, b"kept")
        writer = await store.upload_writer("u2", 4)
        await asyncio.to_thread(writer.write, b"dropped")
        await asyncio.to_thread(writer.abort)
        assert await held(store, "u2", b"kept") == b"kept"

    run(scenario())


def test_writer_discards_bytes_past_the_recorded_offset(store: BlobStore) -> None:
    """A request that died after writing but before its size was recorded."""

    async def scenario() -> None:
        await store.upload_start("u3")
        await write(store, "u3", 0, b"0123456789")
        assert await write(store, "u3", 4, b"xy") == 6
        with pytest.raises(UploadMissing):
            await store.upload_writer("u3", 50)
        assert await held(store, "u3", b"0123xy") == b"0123xy"

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
        await held.release()
        await (await store.upload_lock("k1")).release()
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


def test_written_parts_are_trusted_by_their_store(store: BlobStore, tmp_path: Path) -> None:
    """The token a writer reports is trusted by its store; one of another store or boot is not."""

    async def scenario() -> None:
        await store.upload_start("t1")
        writer = await store.upload_writer("t1", 0)
        await asyncio.to_thread(writer.write, b"part")
        written = await asyncio.to_thread(writer.close)
        assert written.size == 4
        assert store.state_trusted(written.token)
        assert store.state_trusted(DURABLE)
        for foreign in ("boot:another-boot", "memory:another-store", "volatile:x", "\u00e9"):
            assert not store.state_trusted(foreign)
        await store.upload_delete("t1")

    run(scenario())


def test_another_instance_trusts_only_durable_parts(
        store: BlobStore, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A restarted memory store has lost the bytes: it trusts no token of the one before; the
    filesystem store, in the same boot, trusts its own tokens from another instance."""

    async def scenario() -> str:
        await store.upload_start("t2")
        writer = await store.upload_writer("t2", 0)
        await asyncio.to_thread(writer.write, b"part")
        token = (await asyncio.to_thread(writer.close)).token
        await store.upload_delete("t2")
        return token

    token = run(scenario())
    assert isinstance(token, str)
    again = open_store(request.node.callspec.params["store"], tmp_path / "store", request)  # the fixture's root
    assert again.state_trusted(token) == (isinstance(store, FilesystemBlobStore) or token == DURABLE)


def test_filesystem_trusts_unsynced_parts_for_one_boot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FilesystemBlobStore(str(tmp_path))

    async def part(upload_id: str) -> str:
        await store.upload_start(upload_id)
        writer = await store.upload_writer(upload_id, 0)
        writer.write(b"part")
        token = writer.close().token
        await store.upload_delete(upload_id)
        return token

    monkeypatch.setattr(filesystem_module, "_BOOT_ID", "first-boot")
    token = run(part("b1"))
    assert token != DURABLE and store.state_trusted(token)
    monkeypatch.setattr(filesystem_module, "_BOOT_ID", "second-boot")  # the machine restarted
    assert not store.state_trusted(token)
    monkeypatch.setattr(filesystem_module, "_BOOT_ID", None)  # no boot id: each part is synced
    assert run(part("b2")) == DURABLE
    assert not store.state_trusted(token)


@pytest.mark.parametrize("store", ["filesystem", "memory"], indirect=True)  # the stores that read back
def test_upload_read_capability(store: BlobStore) -> None:
    assert isinstance(store, UploadReader)

    async def scenario() -> None:
        await store.upload_start("r1")
        await write(store, "r1", 0, b"0123456789")
        assert await collect(store.upload_read("r1", 4)) == b"0123"
        assert await collect(store.upload_read("r1", 100)) == b"0123456789"
        await store.upload_delete("r1")
        with pytest.raises(UploadMissing):
            await collect(store.upload_read("r1", 4))

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


def test_hash_states_of_another_format_are_refused() -> None:
    """A state saved by another build, machine or algorithm, or without the versioned header
    (before it existed), is refused with UnreadableHashState instead of giving a wrong digest."""
    require(ResumableHasher.resumable(), "no libcrypto: hash states cannot be saved")
    hasher = ResumableHasher("sha256")
    hasher.update(b"abc")
    state = hasher.state()
    assert state is not None
    assert ResumableHasher("sha256", state).digest() == Digest.of(b"abc")
    header, _, context = state.partition(b"\n")
    other_machine = header.replace(sys.byteorder.encode(), b"big" if sys.byteorder == "little" else b"little")
    refused = [
        context,  # an older build's row: the bare context
        header.replace(b"/1 ", b"/2 ") + b"\n" + context,  # a later format version
        other_machine + b"\n" + context,  # another byte order
        state[:-1],  # cut short
    ]
    for bad in refused:
        with pytest.raises(UnreadableHashState):
            ResumableHasher("sha256", bad)
    with pytest.raises(UnreadableHashState):
        ResumableHasher("sha512", state)  # another algorithm's
