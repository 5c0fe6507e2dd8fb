"""Requests do not wait for the disk; a hash state saved before its bytes were durable
is trusted only within the same boot of the operating system.

In-process, on the real filesystem store and SQLite: a "crash" is simulated by
changing the boot id the store compares against, and by damaging the bytes
on disk as a lost page cache could. The service only records what the store
says; a store that cannot read an unfinished upload back makes a state it does
not trust end the upload cleanly instead.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from cargohold.digest import Digest
from cargohold.errcodes import BlobUploadUnknown, DigestInvalid
from cargohold.metadata import migrate, open_metadata_store
from cargohold.service.uploads import Uploads
from cargohold.storage import BlobStore, UploadReader, open_blob_store
from cargohold.storage import filesystem as filesystem_module
from cargohold.storage.memory import MemoryBlobStore
from tests.support.requirements import require

FIRST, SECOND = b"a" * 300_000, b"b" * 200_000
DIGEST = Digest("sha256", hashlib.sha256(FIRST + SECOND).hexdigest())


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _uploads(root: Path) -> Uploads:
    migrate(f"sqlite://{root}/m.db")
    return Uploads(open_blob_store("filesystem", {"root": str(root)}), open_metadata_store(f"sqlite://{root}/m.db"))


async def _two_requests(root: Path, damage: bool, reboot: bool) -> Path:
    uploads = _uploads(root)
    upload_id = await uploads.start("team/app")
    record = await uploads.get("team/app", upload_id)
    await uploads.append(record, _body(FIRST), start=0, length=len(FIRST))
    saved = (await uploads.get("team/app", upload_id)).hash_state
    assert saved is not None and saved.startswith(b"boot:")
    path = root / "uploads" / upload_id
    if damage:  # what a lost page cache can leave: the right length, other bytes
        path.write_bytes(b"\0" * len(FIRST))
    if reboot:
        filesystem_module._BOOT_ID = "another-boot"
    record = await uploads.get("team/app", upload_id)
    size, hasher = await uploads.append(record, _body(SECOND), start=len(FIRST), length=len(SECOND))
    await uploads.finish(record, DIGEST, size, hasher)
    return root / "blobs" / "sha256" / DIGEST.hex[:2] / DIGEST.hex


@pytest.fixture(autouse=True)
def _restore_boot_id() -> object:
    saved = filesystem_module._BOOT_ID
    require(saved is not None, "no boot id on this system: every request waits for the disk")
    yield
    filesystem_module._BOOT_ID = saved


def test_same_boot_resumes_from_the_saved_state(tmp_path: Path) -> None:
    blob = asyncio.run(_two_requests(tmp_path, damage=False, reboot=False))
    assert blob.read_bytes() == FIRST + SECOND


def test_after_a_reboot_the_hash_is_rebuilt_from_the_bytes_on_disk(tmp_path: Path) -> None:
    blob = asyncio.run(_two_requests(tmp_path, damage=False, reboot=True))
    assert blob.read_bytes() == FIRST + SECOND


def test_bytes_lost_in_a_crash_are_never_placed(tmp_path: Path) -> None:
    with pytest.raises(DigestInvalid):
        asyncio.run(_two_requests(tmp_path, damage=True, reboot=True))
    assert not (tmp_path / "blobs" / "sha256" / DIGEST.hex[:2] / DIGEST.hex).exists()
    assert list((tmp_path / "uploads").iterdir()) == []


def _context(saved: bytes) -> bytes:
    """The bare hash context inside a saved row (token, versioned header, context)."""
    return saved.split(b"\n", 2)[2]


@pytest.mark.parametrize("old_row", ["volatile", "bare", "other-build"])
def test_rows_of_another_format_are_rebuilt_from_the_bytes(tmp_path: Path, old_row: str) -> None:
    """Rows saved before the state had a header (``volatile:<boot>:<context>`` or the bare context),
    or by a build with another state format, are not resumed: the hash is rebuilt and the push completes."""

    async def scenario() -> None:
        uploads = _uploads(tmp_path)
        upload_id = await uploads.start("team/app")
        record = await uploads.get("team/app", upload_id)
        await uploads.append(record, _body(FIRST), start=0, length=len(FIRST))
        record = await uploads.get("team/app", upload_id)
        assert record.hash_state is not None
        token, _, state = record.hash_state.partition(b"\n")
        context = _context(record.hash_state)
        row = {
            "volatile": b"volatile:" + str(filesystem_module._BOOT_ID).encode() + b":" + context,
            "bare": context,
            "other-build": token + b"\n" + state.replace(b"/1 ", b"/9 "),
        }[old_row]
        await uploads.meta.update_upload(upload_id, record.size, record.size, row)
        record = await uploads.get("team/app", upload_id)
        size, hasher = await uploads.append(record, _body(SECOND), start=len(FIRST), length=len(SECOND))
        await uploads.finish(record, DIGEST, size, hasher)

    asyncio.run(scenario())
    assert (tmp_path / "blobs" / "sha256" / DIGEST.hex[:2] / DIGEST.hex).read_bytes() == FIRST + SECOND


class _NoReadBack:
    """The memory store without the optional read-back of unfinished uploads, as an object store is."""

    def __init__(self) -> None:
        self._inner = MemoryBlobStore()

    def __getattr__(self, name: str) -> Any:
        if name == "upload_read":
            raise AttributeError(name)
        return getattr(self._inner, name)


def _without_read_back(root: Path) -> tuple[Uploads, MemoryBlobStore]:
    store = _NoReadBack()
    assert not isinstance(store, UploadReader)
    migrate(f"sqlite://{root}/m.db")
    return Uploads(cast(BlobStore, store), open_metadata_store(f"sqlite://{root}/m.db")), store._inner


@pytest.mark.parametrize("case", ["trusted", "untrusted", "other-algorithm"])
def test_a_store_without_read_back_never_rebuilds(tmp_path: Path, case: str) -> None:
    """A trusted state resumes as usual; an untrusted one, or a digest of another algorithm at the
    end, ends the upload with BLOB_UPLOAD_UNKNOWN (the client starts again) and leaves nothing behind."""

    async def scenario() -> None:
        uploads, inner = _without_read_back(tmp_path)
        upload_id = await uploads.start("team/app")
        record = await uploads.get("team/app", upload_id)
        await uploads.append(record, _body(FIRST), start=0, length=len(FIRST))
        record = await uploads.get("team/app", upload_id)
        assert record.hash_state is not None
        if case == "untrusted":  # saved by a store that is gone (a restarted process)
            _, _, state = record.hash_state.partition(b"\n")
            await uploads.meta.update_upload(upload_id, record.size, record.size, b"memory:gone\n" + state)
            record = await uploads.get("team/app", upload_id)
        digest = Digest.of(FIRST + SECOND, "sha512") if case == "other-algorithm" else DIGEST
        try:
            size, hasher = await uploads.append(record, _body(SECOND), start=len(FIRST), length=len(SECOND),
                                                final=True)
            await uploads.finish(record, digest, size, hasher)
        except BlobUploadUnknown:
            assert case != "trusted"
            assert await uploads.meta.upload(upload_id) is None
            assert await inner.upload_ids() == {}
            assert await inner.stat(digest) is None
        else:
            assert case == "trusted"
            assert await collect(inner.read(digest)) == FIRST + SECOND

    asyncio.run(scenario())


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])
