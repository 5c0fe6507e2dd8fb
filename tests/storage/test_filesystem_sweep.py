"""The filesystem store's sweep against a commit of the same digest at the worst moment: the sweep has
read that no row names an old blob file and is about to delete it, while a push of the same blob finds
the file placed and means to keep it. Either the commit waits and then places its own bytes, or the
sweep passes the file over: the blob is never left without its bytes."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from cargohold.digest import Digest
from cargohold.storage import filesystem, paths
from cargohold.storage.filesystem import FilesystemBlobStore


def _stored(root: Path, data: bytes) -> str:
    """``data`` as a blob file that no row names, last changed an hour ago; its digest."""
    digest = Digest.of(data)
    path = paths.blob_path(str(root), digest)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as file:
        file.write(data)
    when = time.time() - 3600
    os.utime(path, (when, when))
    return str(digest)


class PushDuringTheCheck:
    """The rows as the sweep reads them: nothing names the file; while the sweep checks it one last time
    (its lock taken), a push of the same bytes commits them (in another thread, as a request does)."""

    def __init__(self, root: Path, data: bytes) -> None:
        self.store, self.data = FilesystemBlobStore(str(root), self, orphan_grace_seconds=60), data
        self.commit: threading.Thread | None = None
        self.failure: BaseException | None = None
        self.reads = 0

    async def named_blobs(self, digests: Sequence[str]) -> set[str]:
        self.reads += 1
        if self.reads == 2:  # the first read is of every old file; the second the last check, under the lock
            self.commit = threading.Thread(target=self._push)
            self.commit.start()
            await asyncio.sleep(0.5)  # the commit reaches the placed file meanwhile
        return set()

    def _push(self) -> None:
        try:
            asyncio.run(self._upload())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.failure = exc

    async def _upload(self) -> None:
        await self.store.upload_start("late")
        writer = await self.store.upload_writer("late", 0)
        writer.write(self.data)
        writer.close()
        await self.store.upload_commit("late", Digest.of(self.data))


def test_a_push_that_keeps_a_placed_blob_is_never_left_without_its_bytes(tmp_path: Path) -> None:
    data = os.urandom(100_000)
    digest = _stored(tmp_path, data)
    rows = PushDuringTheCheck(tmp_path, data)
    store = rows.store

    async def run() -> int:
        removed = await store.sweep()
        assert rows.commit is not None
        await asyncio.to_thread(rows.commit.join, 30)
        return removed

    asyncio.run(run())
    assert rows.failure is None, rows.failure
    path = paths.blob_path(str(tmp_path), Digest.parse(digest))
    with open(path, "rb") as file:
        assert "sha256:" + hashlib.sha256(file.read()).hexdigest() == digest, "the pushed blob lost its bytes"
    assert asyncio.run(store.upload_ids()) == {}


def test_a_commit_that_makes_folders_syncs_their_parents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A blob placed in a folder made for it: the folder's own entry (in its parent) is made durable too, else
    a crash could lose the folder with the blob in it. A second blob in that folder syncs the folder alone."""
    synced: list[str] = []
    real = filesystem._fsync_dir
    monkeypatch.setattr(filesystem, "_fsync_dir", lambda path: (synced.append(path), real(path)))
    store = FilesystemBlobStore(str(tmp_path))
    first = b"first"
    second = next(data for n in range(10_000) if (data := b"%d" % n) != first
                  and Digest.of(data).hex[:2] == Digest.of(first).hex[:2])

    async def commit(upload_id: str, data: bytes) -> None:
        await store.upload_start(upload_id)
        writer = await store.upload_writer(upload_id, 0)
        writer.write(data)
        writer.close()
        await store.upload_commit(upload_id, Digest.of(data))

    folder = os.path.dirname(paths.blob_path(str(tmp_path), Digest.of(first)))
    asyncio.run(commit("one", first))
    assert synced == [folder, os.path.dirname(folder), os.path.dirname(os.path.dirname(folder))]
    synced.clear()
    asyncio.run(commit("two", second))
    assert synced == [folder]
