"""Blob transfers: stat, verified and resumable downloads, chunked uploads, mounts.

Every byte is hashed as it passes (ggcr's ``internal/verify``): a download is
checked at EOF against its digest and size before anything is renamed into
place, and an upload is checked before the final ``PUT ?digest=`` so that a
source that lied is never committed.

Upload protocol used (distribution spec, "pushing a blob in chunks")::

    POST /v2/NAME/blobs/uploads/[?mount=DIGEST&from=OTHER]  -> 201 mounted | 202 Location
    PUT  Location?digest=D  (whole body)                       when size <= chunk size
    PATCH Location (Content-Range a-b) ... -> 202 Location     otherwise, then
    PUT  Location?digest=D  (empty body)                       -> 201
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

import httpx

from ..digest import Digest
from ..reference import Reference
from .errors import ClientError, DigestMismatch, SizeMismatch, check
from .transport import wrap_transport_error

if TYPE_CHECKING:
    from .registry import RegistryClient

#: upload chunk: big enough that per-request overhead vanishes, small enough to retry cheaply
DEFAULT_CHUNK_SIZE: Final = 16 * 1024 * 1024
#: read size from sockets and files
READ_SIZE: Final = 1024 * 1024

#: called with the number of bytes just moved, for progress bars
Progress = Callable[[int], None]
#: opens a blob's content afresh (a file, a registry stream), for uploads
ChunkSource = Callable[[], Iterable[bytes]]


class TransferProgress(Protocol):
    """What pull, push and copy report to (the CLI draws a bar from it)."""

    def add_total(self, size: int) -> None:
        """More bytes are expected."""

    def advance(self, size: int) -> None:
        """``size`` more bytes were moved (or found already present)."""


def _blob_path(repository: Reference, digest: Digest) -> str:
    return f"/v2/{repository.repository}/blobs/{digest}"


def stat(client: RegistryClient, repository: Reference, digest: Digest) -> int | None:
    """The blob's size, or None when the repository does not have it."""
    response = client.request("HEAD", repository.registry, _blob_path(repository, digest))
    if response.status_code == 404:
        return None
    check(response, 200)
    length = response.headers.get("Content-Length")
    return int(length) if length is not None else -1


def open_blob(
    client: RegistryClient, repository: Reference, digest: Digest, offset: int = 0
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

    def update(self, data: bytes) -> None:
        self.count += len(data)
        if self.size is not None and self.size >= 0 and self.count > self.size:
            raise SizeMismatch(self.what, self.size, self.count)
        self._hash.update(data)

    def verify(self) -> None:
        if self.size is not None and self.size >= 0 and self.count != self.size:
            raise SizeMismatch(self.what, self.size, self.count)
        got = Digest(self.digest.algorithm, self._hash.hexdigest())
        if got != self.digest:
            raise DigestMismatch(self.what, self.digest, got)


def stream(
    client: RegistryClient,
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


def read_small(client: RegistryClient, repository: Reference, digest: Digest, limit: int) -> bytes:
    """A small blob, in memory and verified (configs)."""
    data = bytearray()
    for chunk in stream(client, repository, digest, None):
        data += chunk
        if len(data) > limit:
            raise ClientError(f"blob {digest} is larger than {limit} bytes")
    return bytes(data)


def download(
    client: RegistryClient,
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
    response = open_blob(client, repository, digest, offset)
    try:
        if offset and response.status_code != 206:  # the registry ignored Range: start over
            verifier = Verifier(f"blob {digest}", digest, size)
            offset = 0
        elif offset and progress is not None:
            progress(offset)
        with partial.open("ab" if offset else "wb") as out:
            for chunk in response.iter_bytes(READ_SIZE):
                verifier.update(chunk)
                out.write(chunk)
                if progress is not None:
                    progress(len(chunk))
            out.flush()
            os.fsync(out.fileno())
    except httpx.HTTPError as exc:
        raise wrap_transport_error(exc, f"GET blob {digest}") from None
    finally:
        response.close()
    try:
        verifier.verify()
    except ClientError:
        partial.unlink(missing_ok=True)
        raise


def _rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    buffer = bytearray()
    for piece in chunks:
        buffer += piece
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


def _location(response: httpx.Response, client: RegistryClient, registry: str) -> str:
    location: str | None = response.headers.get("Location")
    if not location:
        raise ClientError(f"{response.request.method} {response.request.url}: answer has no Location")
    if "://" not in location:
        location = client.base_url(registry) + ("" if location.startswith("/") else "/") + location
    return location


def _with_digest(location: str, digest: Digest) -> str:
    return str(httpx.URL(location).copy_merge_params({"digest": str(digest)}))


def start_upload(
    client: RegistryClient, repository: Reference, params: dict[str, str] | None = None
) -> httpx.Response:
    path = f"/v2/{repository.repository}/blobs/uploads/"
    return client.request("POST", repository.registry, path, params=params, content=b"")


def mount(client: RegistryClient, repository: Reference, digest: Digest, source: str) -> bool:
    """Ask the registry to link ``digest`` from repository ``source``; True if it did (201)."""
    response = start_upload(client, repository, {"mount": str(digest), "from": source})
    if response.status_code == 201:
        return True
    check(response, 202)
    cancel = client.request("DELETE", repository.registry, _location(response, client, repository.registry))
    cancel.close()
    return False


def upload(
    client: RegistryClient,
    repository: Reference,
    digest: Digest,
    size: int,
    chunks: Iterable[bytes],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Progress | None = None,
) -> None:
    """Upload a blob, monolithic when it fits one chunk, else chunked; cancelled on any failure."""
    verifier = Verifier(f"blob {digest}", digest, size)
    response = check(start_upload(client, repository), 202)
    registry = repository.registry
    location = _location(response, client, registry)
    committed = False
    try:
        pieces = _rechunk(chunks, chunk_size)
        first = next(pieces, b"")
        verifier.update(first)
        second = next(pieces, None)
        if second is None:  # fits in one request
            verifier.verify()
            response = client.request(
                "PUT",
                registry,
                _with_digest(location, digest),
                content=first,
                headers={"Content-Type": "application/octet-stream"},
            )
            check(response, 201, 204)
            committed = True
            if progress is not None:
                progress(len(first))
            return
        offset = 0
        for piece in _chain(first, second, pieces):
            if piece is not first:
                verifier.update(piece)
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(piece) - 1}",
            }
            response = check(client.request("PATCH", registry, location, content=piece, headers=headers), 202)
            location = _location(response, client, registry)
            offset += len(piece)
            if progress is not None:
                progress(len(piece))
        verifier.verify()
        response = client.request("PUT", registry, _with_digest(location, digest), content=b"")
        check(response, 201, 204)
        committed = True
    finally:
        if not committed:
            # best effort: the registry expires abandoned uploads anyway
            with contextlib.suppress(ClientError):
                client.request("DELETE", registry, location).close()


def _chain(first: bytes, second: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield second
    yield from rest
