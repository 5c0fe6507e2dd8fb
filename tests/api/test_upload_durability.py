"""Requests do not wait for the disk; a hash state saved before its bytes were durable
is trusted only within the same boot of the operating system.

In-process, on the real filesystem store and SQLite: a "crash" is simulated by
changing the boot id the service compares against, and by damaging the bytes
on disk as a lost page cache could.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cargohold.digest import Digest
from cargohold.errcodes import DigestInvalid
from cargohold.metadata import open_metadata_store
from cargohold.service import uploads as uploads_module
from cargohold.service.uploads import Uploads
from cargohold.storage import open_blob_store
from tests.support.requirements import require

FIRST, SECOND = b"a" * 300_000, b"b" * 200_000
DIGEST = Digest("sha256", hashlib.sha256(FIRST + SECOND).hexdigest())


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _uploads(root: Path) -> Uploads:
    return Uploads(open_blob_store("filesystem", {"root": str(root)}), open_metadata_store(f"sqlite://{root}/m.db"))


async def _two_requests(root: Path, damage: bool, reboot: bool) -> Path:
    uploads = _uploads(root)
    upload_id = await uploads.start("team/app")
    record = await uploads.get("team/app", upload_id)
    await uploads.append(record, _body(FIRST), start=0, length=len(FIRST))
    saved = (await uploads.get("team/app", upload_id)).hash_state
    assert saved is not None and saved.startswith(b"volatile:")
    path = root / "uploads" / upload_id
    if damage:  # what a lost page cache can leave: the right length, other bytes
        path.write_bytes(b"\0" * len(FIRST))
    if reboot:
        uploads_module._BOOT_ID = b"another-boot"
    record = await uploads.get("team/app", upload_id)
    size, hasher = await uploads.append(record, _body(SECOND), start=len(FIRST), length=len(SECOND))
    await uploads.finish(record, DIGEST, size, hasher)
    return root / "blobs" / "sha256" / DIGEST.hex[:2] / DIGEST.hex


@pytest.fixture(autouse=True)
def _restore_boot_id() -> object:
    saved = uploads_module._BOOT_ID
    require(saved is not None, "no boot id on this system: every request waits for the disk")
    yield
    uploads_module._BOOT_ID = saved


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
