"""Blob transfers: stat, and verified, resumable downloads (uploads and mounts: :mod:`.blob_uploads`).

Every byte is hashed as it passes (ggcr's ``internal/verify``): a download is
checked at EOF against its digest and size before anything is renamed into
place. Hashing runs in a helper thread beside the sending or writing thread
(:class:`HashBeside`; hashlib releases the GIL), so the two overlap.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Final, Protocol

import httpx

from ..digest import Digest
from ..reference import Reference
from .direct import BodyReader
from .errors import ClientError, DigestMismatch, SizeMismatch, TransportError, check
from .transport import wrap_transport_error

#: read size from sockets and files
READ_SIZE: Final = 1024 * 1024
#: bytes gathered before they are handed to the hashing thread (fewer, larger hand-overs)
HASH_BATCH: Final = 4 * 1024 * 1024
#: downloaded bytes after which their writeback is started, so the closing fsync is short
WRITEBACK_WINDOW: Final = 16 * 1024 * 1024

#: bytes to hash or write: a chunk from httpx, or a view of a reused buffer
Buffer = bytes | memoryview
#: called with the number of bytes just moved, for progress bars
Progress = Callable[[int], None]
#: opens a blob's content afresh (a file, a registry stream), for uploads
ChunkSource = Callable[[], Iterable[bytes]]


class BlobSession(Protocol):
    """What blob transfers need of a registry client (:class:`.registry.RegistryClient` is one)."""

    #: registries that answered a single-request upload (``POST ?digest=``) without taking it
    single_post_refused: set[str]

    def base_url(self, registry: str) -> str:
        """``scheme://host`` that relative ``Location`` headers are resolved against."""
        ...

    def request(
        self,
        method: str,
        registry: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        content: bytes | Iterable[bytes] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """One request, authorized and retried; ``path`` may be an absolute URL."""
        ...

    def get_direct(self, registry: str, path: str, headers: dict[str, str] | None = None) -> BodyReader | None:
        """A GET's body on the fast path (:mod:`.direct`), or None: then use :meth:`request`."""
        ...


class TransferProgress(Protocol):
    """What pull, push and copy report to (the CLI draws a bar from it)."""

    def add_total(self, size: int) -> None:
        """More bytes are expected."""

    def advance(self, size: int) -> None:
        """``size`` more bytes were moved (or found already present)."""


def _blob_path(repository: Reference, digest: Digest) -> str:
    return f"/v2/{repository.repository}/blobs/{digest}"


def stat(client: BlobSession, repository: Reference, digest: Digest) -> int | None:
    """The blob's size, or None when the repository does not have it."""
    response = client.request("HEAD", repository.registry, _blob_path(repository, digest))
    if response.status_code == 404:
        return None
    check(response, 200)
    length = response.headers.get("Content-Length")
    return int(length) if length is not None else -1


def open_blob(
    client: BlobSession, repository: Reference, digest: Digest, offset: int = 0
) -> httpx.Response:
    """GET the blob from ``offset`` as a stream. The status is 206 if the range was honoured, else 200."""
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    response = client.request(
        "GET", repository.registry, _blob_path(repository, digest), headers=headers, stream=True
    )
    if response.status_code not in (200, 206):
        response.read()
        response.close()
        check(response, 200, not_found="BLOB_UNKNOWN")
    return response


class Verifier:
    """Hashes and counts bytes; :meth:`verify` raises if they are not what was expected."""

    def __init__(self, what: str, digest: Digest, size: int | None) -> None:
        self.what = what
        self.digest = digest
        self.size = size
        self.count = 0
        self._hash = hashlib.new(digest.algorithm)

    def update(self, data: Buffer) -> None:
        self.count += len(data)
        if self.size is not None and self.size >= 0 and self.count > self.size:
            raise SizeMismatch(self.what, self.size, self.count)
        self._hash.update(data)

    def update_all(self, pieces: Sequence[Buffer]) -> None:
        for piece in pieces:
            self.update(piece)

    def verify(self) -> None:
        if self.size is not None and self.size >= 0 and self.count != self.size:
            raise SizeMismatch(self.what, self.size, self.count)
        got = Digest(self.digest.algorithm, self._hash.hexdigest())
        if got != self.digest:
            raise DigestMismatch(self.what, self.digest, got)


class HashBeside:
    """Feeds a :class:`Verifier` from one helper thread, a batch at a time and in order.

    The calling thread hands over a batch and goes on sending or writing it
    while the helper hashes; before the next hand-over it waits for the last
    one, so at most one batch is in flight and every byte is hashed once.

    With ``beside`` false the calling thread hashes each batch itself when it is
    handed over (a body of one batch, see :func:`download`).
    """

    def __init__(self, verifier: Verifier, beside: bool = True) -> None:
        self.verifier = verifier
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="blob-hash") if beside else None
        self._pending: Future[None] | None = None

    def submit(self, batch: Sequence[Buffer]) -> None:
        self.wait()
        if self._pool is None:
            self.verifier.update_all(batch)
            return
        self._pending = self._pool.submit(self.verifier.update_all, batch)

    def wait(self) -> None:
        """Raise what hashing the last batch raised (SizeMismatch)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def passing(self, pieces: Iterable[bytes]) -> Iterator[bytes]:
        """Yield ``pieces`` unchanged, each hashed beside while the consumer uses it."""
        for piece in pieces:
            self.submit([piece])
            yield piece
        self.wait()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.wait()
        if self._pool is not None:
            self._pool.shutdown()

    def __enter__(self) -> HashBeside:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _batched(chunks: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    """Chunks grouped into lists of at least ``size`` bytes (the last may be smaller); no copies."""
    batch: list[bytes] = []
    held = 0
    for chunk in chunks:
        if not chunk:
            continue
        batch.append(chunk)
        held += len(chunk)
        if held >= size:
            yield batch
            batch, held = [], 0
    if batch:
        yield batch




def stream(
    client: BlobSession,
    repository: Reference,
    digest: Digest,
    size: int | None,
    progress: Progress | None = None,
) -> Iterator[bytes]:
    """The blob's bytes as they arrive; raises at the end if they do not match ``digest``/``size``."""
    verifier = Verifier(f"blob {digest}", digest, size)
    response = open_blob(client, repository, digest)
    try:
        for chunk in response.iter_bytes(READ_SIZE):
            verifier.update(chunk)
            if progress is not None:
                progress(len(chunk))
            yield chunk
    except httpx.HTTPError as exc:
        raise wrap_transport_error(exc, f"GET blob {digest}") from None
    finally:
        response.close()
    verifier.verify()


def read_small(client: BlobSession, repository: Reference, digest: Digest, limit: int) -> bytes:
    """A small blob, in memory and verified (configs)."""
    data = bytearray()
    for chunk in stream(client, repository, digest, None):
        data += chunk
        if len(data) > limit:
            raise ClientError(f"blob {digest} is larger than {limit} bytes")
    return bytes(data)


def open_blob_direct(
    client: BlobSession, repository: Reference, digest: Digest, offset: int = 0
) -> BodyReader | None:
    """The blob from ``offset`` on the fast path (:mod:`.direct`), or None: then use :func:`open_blob`."""
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    return client.get_direct(repository.registry, _blob_path(repository, digest), headers)


_thread_buffers = threading.local()


def _filled(body: BodyReader) -> Iterator[Sequence[Buffer]]:
    """The body in full buffers, two of them in turn: a buffer is refilled only after the
    one handed out before it was hashed, as :class:`HashBeside` waits for each batch in turn.

    The two buffers belong to the calling thread and serve all its downloads (allocating
    8 MiB of zeroed memory per blob was a fifth of a pull's samples)."""
    buffers: list[memoryview] | None = getattr(_thread_buffers, "pair", None)
    if buffers is None:
        buffers = _thread_buffers.pair = [memoryview(bytearray(HASH_BATCH)), memoryview(bytearray(HASH_BATCH))]
    turn = 0
    while True:
        view, filled = buffers[turn], 0
        while filled < len(view):
            try:
                n = body.readinto(view[filled:])
            except TransportError:
                if filled:  # written before the error goes up, so a retry resumes after these bytes
                    yield [view[:filled]]
                raise
            if not n:
                break
            filled += n
        if not filled:
            return
        yield [view[:filled]]
        turn ^= 1


def _write_verified(
    out: BinaryIO,
    batches: Iterable[Sequence[Buffer]],
    hashing: HashBeside,
    offset: int,
    progress: Progress | None,
) -> None:
    """Write batches while the helper hashes them, start writeback as it goes, fsync at the end."""
    written = kicked = offset
    for batch in batches:
        hashing.submit(batch)
        out.writelines(batch)
        moved = sum(len(chunk) for chunk in batch)
        written += moved
        if progress is not None:
            progress(moved)
        if written - kicked >= WRITEBACK_WINDOW and hasattr(os, "posix_fadvise"):
            # start writing these pages out now (nothing here reads them again), so
            # the fsync below waits for the last window only
            out.flush()
            os.posix_fadvise(out.fileno(), kicked, written - kicked, os.POSIX_FADV_DONTNEED)
            kicked = written
    hashing.wait()
    out.flush()
    os.fsync(out.fileno())


def download(
    client: BlobSession,
    repository: Reference,
    digest: Digest,
    size: int | None,
    partial: Path,
    progress: Progress | None = None,
) -> None:
    """Download into ``partial``, resuming from its current length with ``Range``.

    On success ``partial`` holds exactly the blob (verified); the caller renames it.
    On a mismatch the partial file is removed, so the next attempt starts over.
    """
    verifier = Verifier(f"blob {digest}", digest, size)
    offset = partial.stat().st_size if partial.exists() else 0
    if size is not None and size >= 0 and offset > size:
        offset = 0
    if offset:
        with partial.open("rb") as existing:
            while block := existing.read(READ_SIZE):
                verifier.update(block)
    with contextlib.ExitStack() as stack:
        direct = open_blob_direct(client, repository, digest, offset)
        batches: Iterable[Sequence[Buffer]]
        if direct is not None:  # the fast path: full buffers, no copies
            stack.enter_context(direct)
            status, batches = direct.status, _filled(direct)
        else:  # httpx: chunks as they arrive, not re-chunked
            response = open_blob(client, repository, digest, offset)
            stack.callback(response.close)
            status, batches = response.status_code, _batched(response.iter_bytes(), HASH_BATCH)
        if offset and status != 206:  # the registry ignored Range: start over
            verifier = Verifier(f"blob {digest}", digest, size)
            offset = 0
        elif offset and progress is not None:
            progress(offset)
        # a body of one buffer is hashed by this thread: the pull's other downloads keep the
        # cores busy, and a helper thread per small layer is a thread start and two hand-overs
        beside = size is None or size < 0 or size - offset > HASH_BATCH
        try:
            with partial.open("ab" if offset else "wb") as out, HashBeside(verifier, beside) as hashing:
                _write_verified(out, batches, hashing, offset, progress)
        except httpx.HTTPError as exc:
            raise wrap_transport_error(exc, f"GET blob {digest}") from None
    try:
        verifier.verify()
    except ClientError:
        partial.unlink(missing_ok=True)
        raise
