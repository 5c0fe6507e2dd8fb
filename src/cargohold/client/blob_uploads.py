"""Blob uploads and mounts, each byte hashed as it is sent and checked before the final ``PUT ?digest=``,
so that a source that lied is never committed.

Upload protocol used (distribution spec, "pushing blobs")::

    POST  uploads/?mount=DIGEST&from=OTHER          -> 201 mounted | 202 Location (then DELETE it)
    POST  uploads/?digest=D  (whole body)           blobs up to SINGLE_POST_LIMIT: 201 if the registry
                                                    takes single-request uploads, else 202 Location and
                                                    the PUT below (that registry is not asked again)
    POST  uploads/                                  -> 202 Location
    PUT   Location?digest=D  (whole body)           when it fits MONOLITHIC_LIMIT and a chunk
    PATCH Location (Content-Range a-b) ...          otherwise, each -> 202 Location, then
    PUT   Location?digest=D  (empty body)           -> 201

PATCH bodies are streamed from the source with their Content-Length, never
held whole, so a chunk can be large (ggcr and skopeo send one PATCH per blob).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Final

import httpx

from ..digest import Digest
from ..reference import Reference
from .blobs import BlobSession, HashBeside, Progress, Verifier
from .errors import ClientError, SizeMismatch, check

#: upload chunk (one PATCH, streamed): a failed upload restarts whole anyway, so chunks only
#: add round trips; 256 MiB keeps a 1 GiB layer to four (bench: 16 MiB chunks pushed at ~85 MB/s)
DEFAULT_CHUNK_SIZE: Final = 256 * 1024 * 1024
#: blobs up to this size (and the chunk size) go in one PUT from memory; larger ones are streamed
MONOLITHIC_LIMIT: Final = 16 * 1024 * 1024
#: blobs up to this size are first offered in one ``POST ?digest=`` (one request instead of two);
#: a registry without it discards the body, and Go's net/http discards up to 256 KiB unread
SINGLE_POST_LIMIT: Final = 256 * 1024

class _Taker:
    """Hands out a chunk stream in pieces of exactly the requested lengths (one per PATCH)."""

    def __init__(self, chunks: Iterable[bytes], what: str, size: int) -> None:
        self._chunks = iter(chunks)
        self._left = b""
        self.what, self.size, self.count = what, size, 0

    def take(self, length: int) -> Iterator[bytes]:
        while length > 0:
            piece, self._left = (self._left or next(self._chunks, b"")), b""
            if not piece:  # the source is shorter than announced: stop before the request goes out short
                raise SizeMismatch(self.what, self.size, self.count)
            if len(piece) > length:
                piece, self._left = piece[:length], piece[length:]
            length -= len(piece)
            self.count += len(piece)
            yield piece

    def rest(self) -> Iterator[bytes]:
        if self._left:
            yield self._left
        yield from self._chunks


def _rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    buffer = bytearray()
    for piece in chunks:
        buffer += piece
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


def _location(response: httpx.Response, client: BlobSession, registry: str) -> str:
    location: str | None = response.headers.get("Location")
    if not location:
        raise ClientError(f"{response.request.method} {response.request.url}: answer has no Location")
    if "://" not in location:
        location = client.base_url(registry) + ("" if location.startswith("/") else "/") + location
    return location


def _with_digest(location: str, digest: Digest) -> str:
    return str(httpx.URL(location).copy_merge_params({"digest": str(digest)}))


def start_upload(
    client: BlobSession, repository: Reference, params: dict[str, str] | None = None, body: bytes = b""
) -> httpx.Response:
    path = f"/v2/{repository.repository}/blobs/uploads/"
    headers = {"Content-Type": "application/octet-stream"} if body else None
    return client.request("POST", repository.registry, path, params=params, content=body, headers=headers)


def _upload_in_one_post(client: BlobSession, repository: Reference, digest: Digest, body: bytes) -> httpx.Response:
    """``POST ?digest=`` with the whole blob (the spec's single-request upload): 201 when the
    registry supports it; else the answer of a plain start (202 with a Location), and the
    registry is not asked that way again."""
    response = start_upload(client, repository, {"digest": str(digest)}, body)
    status = response.status_code
    if status == 201 or status >= 500 or status in (401, 403, 429):
        return response  # done, or a failure a plain start would meet too: the caller checks it
    client.single_post_refused.add(repository.registry)
    if status == 202:  # started an ordinary session and ignored the body
        return response
    response.close()  # a 4xx: the registry does not understand the form
    return start_upload(client, repository)


def mount(client: BlobSession, repository: Reference, digest: Digest, source: str) -> bool:
    """Ask the registry to link ``digest`` from repository ``source``; True if it did (201)."""
    response = start_upload(client, repository, {"mount": str(digest), "from": source})
    if response.status_code == 201:
        return True
    check(response, 202)
    cancel = client.request("DELETE", repository.registry, _location(response, client, repository.registry))
    cancel.close()
    return False


def upload(
    client: BlobSession,
    repository: Reference,
    digest: Digest,
    size: int,
    chunks: Iterable[bytes],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Progress | None = None,
) -> None:
    """Upload a blob: one POST or PUT from memory when small, else streamed PATCHes; cancelled on any failure."""
    verifier = Verifier(f"blob {digest}", digest, size)
    registry = repository.registry
    body: bytes | None = None
    if 0 <= size <= min(SINGLE_POST_LIMIT, chunk_size) and registry not in client.single_post_refused:
        body = b"".join(chunks)
        verifier.update(body)
        verifier.verify()
        response = _upload_in_one_post(client, repository, digest, body)
        if response.status_code == 201:
            if progress is not None:
                progress(len(body))
            return
    else:
        response = start_upload(client, repository)
    check(response, 202)
    location = _location(response, client, registry)
    committed = False
    try:
        if size < 0 or size > min(chunk_size, MONOLITHIC_LIMIT):
            location = _upload_chunks(client, registry, location, verifier, chunks, chunk_size, progress)
            response = client.request("PUT", registry, _with_digest(location, digest), content=b"")
            check(response, 201, 204)
            committed = True
            return
        if body is None:
            body = b"".join(chunks)
            verifier.update(body)
            verifier.verify()
        response = client.request(
            "PUT",
            registry,
            _with_digest(location, digest),
            content=body,
            headers={"Content-Type": "application/octet-stream"},
        )
        check(response, 201, 204)
        committed = True
        if progress is not None:
            progress(len(body))
    finally:
        if not committed:
            # best effort: the registry expires abandoned uploads anyway
            with contextlib.suppress(ClientError):
                client.request("DELETE", registry, location).close()


def _upload_chunks(
    client: BlobSession,
    registry: str,
    location: str,
    verifier: Verifier,
    chunks: Iterable[bytes],
    chunk_size: int,
    progress: Progress | None,
) -> str:
    """PATCH the blob in chunks and verify it; returns the Location for the final PUT."""
    size = verifier.size if verifier.size is not None else -1
    if size < 0:  # unknown size: gather each chunk to announce its length
        offset = 0
        for piece in _rechunk(chunks, chunk_size):
            verifier.update(piece)
            location = _patch(client, registry, location, offset, len(piece), piece)
            offset += len(piece)
            if progress is not None:
                progress(len(piece))
    else:  # known size: stream each chunk with its length, hashed beside the sending
        taker = _Taker(chunks, verifier.what, size)
        with HashBeside(verifier) as hashing:
            for offset in range(0, size, chunk_size):
                length = min(chunk_size, size - offset)
                location = _patch(client, registry, location, offset, length, hashing.passing(taker.take(length)))
                if progress is not None:
                    progress(length)
        for extra in taker.rest():
            verifier.update(extra)  # raises SizeMismatch: the source is longer than announced
    verifier.verify()
    return location


def _patch(
    client: BlobSession, registry: str, location: str, offset: int, length: int, body: bytes | Iterator[bytes]
) -> str:
    headers = {
        "Content-Type": "application/octet-stream",
        "Content-Length": str(length),
        "Content-Range": f"{offset}-{offset + length - 1}",
    }
    response = check(client.request("PATCH", registry, location, content=body, headers=headers), 202)
    return _location(response, client, registry)
