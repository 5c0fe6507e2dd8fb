"""The blob-store contract, shaped by S3's rules so an object store can implement it.

- No append and no rename are assumed at the object level: an upload session
  (``upload_*``) collects bytes under an upload id; ``upload_commit`` places them
  at the blob's content address in one step (filesystem: fsync + rename; S3:
  complete the multipart upload to the final key).
- Each request's bytes go through a :class:`BlobWriter` whose methods block and
  are called from a worker thread, so the event loop keeps receiving while the
  previous buffer is hashed and written.
- Reads are by range and streamed.
- A full disk or quota raises :class:`cargohold.errcodes.InsufficientStorage`.
- Durability is the store's rule: a writer's ``close`` says what the part's
  bytes can be trusted for (a :class:`Written` token) and ``state_trusted``
  answers, later and maybe in another process, whether a hash state saved with
  that token still describes the bytes the store holds. The caller only
  records the token.
- Optional capabilities are separate protocols, probed with ``isinstance``:
  :class:`LocalFileServer` (the HTTP server can send the file itself),
  :class:`Redirector` (presigned URLs), :class:`UploadReader` (an unfinished
  upload's bytes can be read back; S3 cannot), :class:`ChunkMinimum` and
  :class:`Sweeper` (objects that a crash left unreferenced are found and removed) and
  :class:`SizeLimit`, and :class:`KeyedObjects`.

The store only keeps bytes. Which repository may read a blob, blob sizes and
upload offsets are metadata (:mod:`cargohold.metadata`); digests are verified
by the service before ``upload_commit``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Final, NamedTuple, Protocol, runtime_checkable

from ..digest import Digest


class StorageError(Exception):
    """A storage backend failed; the message names the backend and the object."""


class UploadMissing(StorageError):
    """The bytes of an upload session are gone (purged, or lost in a crash)."""


#: upload ids a store accepts (the service makes hex ones): safe as a file name or an object key
_UPLOAD_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")


def check_upload_id(store: str, upload_id: str) -> None:
    """Raise UploadMissing for an id no store could have made (``store`` names the store in the message)."""
    if not _UPLOAD_ID.fullmatch(upload_id):
        raise UploadMissing(f"{store}: invalid upload id {upload_id!r}")


class BlobMissing(StorageError):
    """No blob is stored at that digest."""


class BlobCorrupt(StorageError):
    """A blob's bytes do not hash to its digest."""


class UploadBusy(StorageError):
    """Another request holds the upload session's lock."""


#: the token of bytes on stable storage: a state saved with it is trusted anywhere, at any time
DURABLE: Final = ""


class Written(NamedTuple):
    """What a writer's ``close`` reports."""

    #: the upload's total size
    size: int
    #: :data:`DURABLE`, or the store's opaque name for the span in which the bytes are known
    #: to stay as written (the filesystem store: this boot of the operating system)
    token: str


class BlobWriter(Protocol):
    """Appends one request's bytes to an upload. Blocking; call from a worker thread."""

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data``; read only during the call (the caller may reuse a buffer after)."""
        ...

    def close(self) -> Written:
        """End this request's writes; the bytes may still be on their way to stable storage
        (``upload_commit`` makes the whole upload durable before placing it)."""
        ...

    def abort(self) -> None:
        """Forget what this writer wrote (the upload keeps its earlier size)."""
        ...


class UploadLock(Protocol):
    """Held by the one request that may change an upload session; other processes see it too."""

    async def release(self) -> None:
        """Give the lock up before the response goes out: the client's next request, on any replica, finds it free."""
        ...


@runtime_checkable
class BlobStore(Protocol):
    """Content-addressed blob bytes plus upload sessions."""

    name: str

    async def check(self, writable: bool) -> None:
        """Raise StorageError unless blobs can be read (and written, if ``writable``) now (for ``/readyz``)."""
        ...

    async def stat(self, digest: Digest) -> int | None:
        """The blob's size, or ``None`` if it is not stored."""
        ...

    def read(self, digest: Digest, start: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream ``length`` bytes (to the end when ``None``) from ``start``; raises BlobMissing."""
        ...

    async def delete(self, digest: Digest) -> bool: ...

    async def upload_start(self, upload_id: str) -> None: ...

    async def upload_lock(self, upload_id: str) -> UploadLock:
        """Take the session's lock without waiting: raises UploadBusy while another holder has it,
        UploadMissing if the session's bytes are gone."""
        ...

    async def upload_writer(self, upload_id: str, offset: int) -> BlobWriter:
        """A writer that continues the upload at ``offset``, its last recorded size.

        Bytes past ``offset`` (from a request that died before its size was
        recorded) are discarded. Raises UploadMissing if fewer than ``offset``
        bytes are there.
        """
        ...

    def state_trusted(self, token: str) -> bool:
        """Whether the upload bytes a writer reported with ``token`` are still as written, so that
        a hash state saved with it may be resumed (:data:`DURABLE` always is)."""
        ...

    async def upload_sync(self, upload_id: str) -> None:
        """Make the upload's bytes durable (they are verified once they are; then committed)."""
        ...

    async def upload_commit(self, upload_id: str, digest: Digest) -> None:
        """Make the upload's bytes durable, place them at ``digest`` (already verified), end the session.

        Repeatable: when the blob is already placed (by this upload before a crash, or by
        another) the stored copy stands and the upload's bytes, if still there, are dropped;
        raises UploadMissing only when neither is there.
        """
        ...

    async def upload_delete(self, upload_id: str) -> None: ...

    async def upload_ids(self) -> dict[str, float]:
        """Every upload session the store holds, with when it last changed (epoch seconds)."""
        ...


@runtime_checkable
class LocalFileServer(Protocol):
    """A store whose blobs are local files the HTTP server may send directly."""

    def local_path(self, digest: Digest) -> str: ...


@runtime_checkable
class UploadReader(Protocol):
    """A store that can read back an unfinished upload (to hash its bytes again)."""

    def upload_read(self, upload_id: str, length: int) -> AsyncIterator[bytes]:
        """The first ``length`` bytes of an upload; raises UploadMissing."""
        ...


@runtime_checkable
class ChunkMinimum(Protocol):
    """A store that keeps upload chunks best in pieces of at least ``min_chunk`` bytes
    (``OCI-Chunk-Min-Length``); smaller ones cost it a rewrite of the upload's tail."""

    @property
    def min_chunk(self) -> int: ...


@runtime_checkable
class SizeLimit(Protocol):
    """A store that takes blobs of at most ``max_size`` bytes (S3: 10,000 parts); its writer raises
    SizeInvalid past it, and an upload that declares more is refused before its body is read."""

    @property
    def max_size(self) -> int: ...


@runtime_checkable
class KeyedObjects(Protocol):
    """A store that keeps each blob's bytes under a key of its own (S3: one per upload), named by a row that
    garbage collection deletes first: it then deletes the object by that key, never by digest."""

    async def delete_key(self, key: str) -> None:
        """Delete the object at ``key``; one already gone is deleted."""
        ...


@runtime_checkable
class Redirector(Protocol):
    """A store that can hand clients a URL to fetch a blob from directly."""

    async def redirect_url(self, digest: Digest) -> str | None: ...


@runtime_checkable
class Sweeper(Protocol):
    """A store where a crash can leave objects that no record names (between creating an object and
    recording it, or recording its loss and deleting it): a periodic sweep removes them once they are
    older than any step of a live upload or commit takes."""

    #: seconds between two sweeps
    sweep_interval: float

    async def sweep(self) -> int:
        """Remove what nothing refers to and is old enough; how many objects and uploads were removed."""
        ...
