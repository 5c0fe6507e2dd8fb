"""Blob store in the process's memory: for tests and for embedding.

Everything is lost when the process ends, and each process has a store of its
own: the server refuses ``storage.driver: memory`` with more than one worker.
Upload bytes live as long as the store, so a writer's token names this store
instance: a hash state saved with another instance's token (before a restart)
is not trusted, and its bytes are gone anyway.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import AsyncIterator
from typing import Final

from ..digest import Digest
from .driver import DURABLE, BlobMissing, StorageError, UploadBusy, UploadMissing, Written, check_upload_id

#: bytes per chunk of a streamed read, as the filesystem store's
READ_CHUNK: Final = 1 << 20


class _Upload:
    __slots__ = ("data", "changed", "locked")

    def __init__(self) -> None:
        self.data = bytearray()
        self.changed = time.time()
        self.locked = False


class _MemoryWriter:
    """Appends to one upload; see :class:`cargohold.storage.driver.BlobWriter`."""

    __slots__ = ("_store", "_upload", "_start")

    def __init__(self, store: MemoryBlobStore, upload: _Upload, start: int):
        self._store = store
        self._upload = upload
        self._start = start

    def write(self, data: bytes | memoryview) -> None:
        with self._store._mutex:
            self._upload.data += data
            self._upload.changed = time.time()

    def close(self) -> Written:
        with self._store._mutex:
            return Written(len(self._upload.data), self._store._token)

    def abort(self) -> None:
        with self._store._mutex:
            del self._upload.data[self._start :]


class _MemoryLock:
    __slots__ = ("_upload",)

    def __init__(self, upload: _Upload):
        self._upload = upload

    async def release(self) -> None:
        self._upload.locked = False


class MemoryBlobStore:
    """Blobs and uploads in dictionaries; see the module doc."""

    name = "memory"

    def __init__(self) -> None:
        self._blobs: dict[Digest, bytes] = {}
        self._uploads: dict[str, _Upload] = {}
        # writers run in worker threads while the event loop reads and deletes
        self._mutex = threading.Lock()
        self._token = f"memory:{secrets.token_hex(16)}"

    async def check(self, writable: bool) -> None:
        return None

    async def stat(self, digest: Digest) -> int | None:
        blob = self._blobs.get(digest)
        return None if blob is None else len(blob)

    async def read(self, digest: Digest, start: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        blob = self._blobs.get(digest)
        if blob is None:
            raise BlobMissing(f"memory: no blob {digest}")
        end = len(blob) if length is None else min(len(blob), start + length)
        view = memoryview(blob)
        for offset in range(start, end, READ_CHUNK):
            yield bytes(view[offset : min(end, offset + READ_CHUNK)])

    async def delete(self, digest: Digest) -> bool:
        return self._blobs.pop(digest, None) is not None

    def _upload(self, upload_id: str) -> _Upload:
        check_upload_id(self.name, upload_id)
        upload = self._uploads.get(upload_id)
        if upload is None:
            raise UploadMissing(f"memory: upload {upload_id} has no data")
        return upload

    async def upload_start(self, upload_id: str) -> None:
        check_upload_id(self.name, upload_id)
        if upload_id in self._uploads:
            raise StorageError(f"memory: upload {upload_id} exists")
        self._uploads[upload_id] = _Upload()

    async def upload_lock(self, upload_id: str) -> _MemoryLock:
        upload = self._upload(upload_id)
        if upload.locked:
            raise UploadBusy(f"memory: upload {upload_id} is in use")
        upload.locked = True
        return _MemoryLock(upload)

    async def upload_writer(self, upload_id: str, offset: int) -> _MemoryWriter:
        upload = self._upload(upload_id)
        with self._mutex:
            size = len(upload.data)
            if size < offset:
                raise UploadMissing(f"memory: upload {upload_id} holds {size} bytes, expected {offset}")
            del upload.data[offset:]
        return _MemoryWriter(self, upload, offset)

    def state_trusted(self, token: str) -> bool:
        return token == DURABLE or token == self._token

    async def upload_read(self, upload_id: str, length: int) -> AsyncIterator[bytes]:
        upload = self._upload(upload_id)
        with self._mutex:
            data = bytes(upload.data[:length])
        for offset in range(0, len(data), READ_CHUNK):
            yield data[offset : offset + READ_CHUNK]

    async def upload_sync(self, upload_id: str) -> None:
        self._upload(upload_id)

    async def upload_commit(self, upload_id: str, digest: Digest) -> None:
        upload = self._uploads.pop(upload_id, None)
        if digest in self._blobs:
            return  # the stored copy stands
        if upload is None:
            raise UploadMissing(f"memory: upload {upload_id} has no data")
        with self._mutex:
            self._blobs[digest] = bytes(upload.data)

    async def upload_delete(self, upload_id: str) -> None:
        upload = self._uploads.pop(upload_id, None)
        if upload is not None:
            with self._mutex:
                upload.data.clear()

    async def upload_ids(self) -> dict[str, float]:
        return {upload_id: upload.changed for upload_id, upload in self._uploads.items()}
