"""Blobs of proxy repositories, fetched from their upstream on first request: once per digest.

A fetch is a task of its own (a client that goes away does not stop it for the others). One worker thread
reads the upstream's bytes into an upload session (:meth:`cargohold.service.uploads.Uploads.append_read`: the
hashing, digest check, commit and crash safety of a push), a piece at a time, and hands each piece, once hashed
and written, to every reader of the blob. The last piece reaches readers only once the digest is verified, so a
client never receives a whole blob that does not match: its response is cut short instead, nothing is stored,
and the next request tries again. A blob of at most :data:`SMALL_BLOB` bytes is verified and committed before its
first byte goes out, so its client is told the upstream's failure in the status line and a request after it finds
it stored; for a larger one the commit follows without holding the clients. Until the fetch ends (committed,
linked), later requests for the blob join it rather than start another.

The pieces are the ``bytes`` the thread's reads return; the event loop sees each once, to pass it on. (An
earlier design passed the upstream's chunks through the loop to be hashed and written in other threads, at
about twice the CPU; another stored small blobs whole before sending them from the store, which held every
client for the whole upstream transfer and the commit: a cold pull of 64 layers of 4 MiB took 1.68 times as
long as one straight from the upstream, against 1.48 now.)

Single flight:

* in this process, a dict of fetches by digest: later requests read the same chunks, from byte 0;
* across processes and replicas, a lease in the metadata store (``proxy-blob:DIGEST``), renewed
  while the fetch runs. A process that finds it held polls the store until the blob is there, or
  takes the fetch over if the lease lapses (its holder died); after :data:`WAIT_SECONDS` it streams
  from the upstream itself, without storing.

Memory: a fetch keeps at most :data:`WINDOW` bytes of chunks. A reader that falls further behind
(a slow client, or one that came late to a large blob) waits for the commit and reads the rest
from the store.

A blob the store holds already (another proxy repository fetched it) is linked without a GET, but
only once a HEAD shows that this upstream repository has it: linking on the digest alone would
hand out blobs of repositories the caller cannot read upstream. A range of a blob not stored yet is
asked of the upstream as is, and not stored.

In read-only mode nothing is written: a stored blob is read (after the same HEAD) without linking it,
any other is streamed from the upstream (its digest still checked), with neither lease nor upload.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final

from ..digest import Digest
from ..errcodes import BlobUnknown, SizeInvalid
from ..events import Action, Event
from ..events.recorder import Recorder
from ..metadata.store import MetadataStore, UploadRecord
from ..service.common import Guard
from ..service.uploads import Uploads
from ..storage.driver import BlobStore
from ..storage.hashing import ResumableHasher
from .upstream import Upstream, UpstreamBlob, UpstreamError, UpstreamRefused

log: Final = logging.getLogger("cargohold.proxy")

#: seconds a fetch's lease lasts unless renewed; a dead holder's is taken over after this
LEASE_SECONDS: Final = 10.0
#: the leader renews its lease this often
RENEW_SECONDS: Final = 3.0
#: how long a process waits for another's fetch before it streams from the upstream itself
WAIT_SECONDS: Final = 30.0
#: a waiting process looks for the blob in the store after this pause, growing to the most
#: (small blobs are picked up at once, a large one's wait costs few queries), and tries the lease
POLL_SECONDS: Final = 0.05
MAX_POLL_SECONDS: Final = 0.5
LEASE_POLL_SECONDS: Final = 1.0
#: chunk bytes a fetch keeps for its readers
WINDOW: Final = 16 << 20
#: a blob up to this size is verified and committed before its first byte goes out (an upstream's failure is
#: told in the status line, not by a response cut short, and a request after it finds it stored: a few ms of
#: fsync and commit); a larger one is sent as it arrives, but for its last piece
SMALL_BLOB: Final = 1 << 20


def lease_name(digest: Digest) -> str:
    return f"proxy-blob:{digest}"


@dataclass(eq=False)
class _Fetch:
    """One blob on its way from an upstream: its chunks, for every reader in this process."""

    digest: Digest
    repository: str
    upstream: Upstream
    upstream_repository: str
    #: the blob's size, once known; or the error that ended the fetch before its first byte
    ready: asyncio.Future[int]
    #: more repositories to link the blob into once stored (their upstreams confirmed they have it)
    also_link: set[str] = field(default_factory=set)
    chunks: collections.deque[bytes] = field(default_factory=collections.deque)
    held: int = 0
    #: the number of the first chunk held, and of the next to come
    first_no: int = 0
    next_no: int = 0
    #: every byte is published and verified
    finished: bool = False
    #: the blob was stored before any chunk was published (fetched whole, or by another process): readers
    #: are sent the stored blob
    from_store: bool = False
    #: the blob is in the store (for readers that fell behind)
    stored: asyncio.Event = field(default_factory=asyncio.Event)
    #: whether the chunks go to the store (else: streamed only, after waiting too long for another)
    storing: bool = True
    error: BaseException | None = None
    _signal: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        signal, self._signal = self._signal, asyncio.Event()
        signal.set()

    async def changed(self) -> None:
        await self._signal.wait()

    def publish(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.held += len(chunk)
        self.next_no += 1
        while self.held > WINDOW and len(self.chunks) > 1:
            self.held -= len(self.chunks.popleft())
            self.first_no += 1
        self.notify()

    def fail(self, error: BaseException) -> None:
        self.error = error
        if not self.ready.done():
            self.ready.set_exception(error)
        self.chunks.clear()
        self.notify()
        self.stored.set()


def _answer(error: BaseException, digest: Digest) -> BaseException:
    """What a request is told of an upstream's 404: the spec's BLOB_UNKNOWN."""
    if isinstance(error, UpstreamRefused) and error.status == 404:
        return BlobUnknown(detail={"digest": str(digest)})
    return error


class BlobFetches:
    """The blob fetches of one process (see the module docstring)."""

    def __init__(self, store: BlobStore, meta: MetadataStore, recorder: Recorder, holder: str | None = None,
                 guard: Guard | None = None) -> None:
        self.store = store
        #: whether fetched blobs are stored (not in read-only mode)
        self.caching = guard is None or guard.writable
        self.meta = meta
        self.recorder = recorder
        self.uploads = Uploads(store, meta, recorder)
        #: who this process is in the store's leases
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._fetches: dict[Digest, _Fetch] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        """Stop the fetches in flight (their upload sessions are cancelled, their leases given up)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def idle(self) -> None:
        """Wait until the fetches in flight have ended (their blobs committed and linked, or failed)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def fetch(
        self, repository: str, digest: Digest, upstream: Upstream, upstream_repository: str,
        start: int = 0, length: int | None = None,
    ) -> tuple[int, AsyncIterator[bytes] | None]:
        """(blob size, its bytes ``start``..``start + length``) for a blob ``repository`` does not link yet;
        linked into it once stored and verified. None for the bytes: the blob is stored and linked already
        (send it as any stored blob). Raises BlobUnknown, UpstreamError or UpstreamRefused."""
        ranged = start > 0 or length is not None
        size = await self.meta.blob_size(str(digest))
        if size is not None and await self._link_stored(repository, digest, upstream, upstream_repository):
            return size, (None if self.caching else self.store.read(digest, start, length))
        if ranged:
            return await self._uncached_range(digest, upstream, upstream_repository, start, length)
        fetch = self._fetches.get(digest)
        if fetch is None:
            fetch = self._start(repository, digest, upstream, upstream_repository)
        elif repository != fetch.repository and repository not in fetch.also_link:
            await self._confirm(digest, upstream, upstream_repository)
            if self._fetches.get(digest) is not fetch:  # it ended meanwhile: stored now, or to fetch again
                return await self.fetch(repository, digest, upstream, upstream_repository)
            fetch.also_link.add(repository)
        try:
            size = await asyncio.shield(fetch.ready)
        except (UpstreamRefused, UpstreamError) as exc:
            raise _answer(exc, digest) from exc
        return size, (None if fetch.from_store else self._read(fetch))

    # -- linking a stored blob ----------------------------------------------------------------------

    async def _confirm(self, digest: Digest, upstream: Upstream, upstream_repository: str) -> int:
        try:
            return await upstream.blob_size(upstream_repository, digest)
        except UpstreamRefused as exc:
            raise _answer(exc, digest) from exc

    async def _link_stored(self, repository: str, digest: Digest, upstream: Upstream, upstream_repository: str) -> bool:
        """Link a stored blob into ``repository`` once the upstream confirms that repository has it;
        False if the blob left the store meanwhile (collected)."""
        if await self.meta.linked_blob_size(repository, str(digest)) is not None:
            return True
        await self._confirm(digest, upstream, upstream_repository)
        return await self._link(repository, digest) if self.caching else True

    async def _link(self, repository: str, digest: Digest) -> bool:
        async with self.meta.transaction() as tx:
            repository_id = await tx.repository_id(repository)
            if repository_id is None:
                repository_id = await tx.ensure_repository(repository)
                await self.recorder.record(tx, Event.now(Action.REPOSITORY_CREATE, repository=repository))
            if not await tx.link_blob(repository_id, str(digest)):
                return False
            size = await tx.blob_size(str(digest))
            await self.recorder.record(tx, Event.now(Action.BLOB_PUSH, repository=repository, digest=str(digest),
                                                     size=size))
        return True

    # -- ranges of blobs not stored -------------------------------------------------------------

    async def _uncached_range(
        self, digest: Digest, upstream: Upstream, upstream_repository: str, start: int, length: int | None
    ) -> tuple[int, AsyncIterator[bytes]]:
        try:
            blob = await upstream.open_blob(upstream_repository, digest, start, length)
        except UpstreamRefused as exc:
            raise _answer(exc, digest) from exc
        try:
            total = blob.total if blob.total is not None else await self._confirm(digest, upstream, upstream_repository)
        except BaseException:
            await blob.close()
            raise
        return total, _closing(blob)

    # -- the fetch ----------------------------------------------------------------------------------

    def _start(self, repository: str, digest: Digest, upstream: Upstream, upstream_repository: str) -> _Fetch:
        fetch = _Fetch(digest, repository, upstream, upstream_repository, asyncio.get_running_loop().create_future(),
                       storing=self.caching)
        self._fetches[digest] = fetch
        task = asyncio.create_task(self._run(fetch), name=f"proxy fetch {digest}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return fetch

    async def _run(self, fetch: _Fetch) -> None:
        name = lease_name(fetch.digest)
        leased = False
        try:
            leased = fetch.storing and await self._lead_or_wait(fetch)
            if fetch.from_store:
                return
            renewing = asyncio.create_task(self._renew(name)) if leased else None
            try:
                await self._transfer(fetch)
            finally:
                if renewing is not None:
                    renewing.cancel()
                    await asyncio.gather(renewing, return_exceptions=True)
        except asyncio.CancelledError:
            fetch.fail(UpstreamError(f"the fetch of {fetch.digest} was stopped"))
            raise
        except Exception as exc:
            fetch.fail(exc)
            log.warning("upstream %s: fetch of %s@%s failed: %s", fetch.upstream.name, fetch.upstream_repository,
                        fetch.digest, exc)
        finally:
            self._forget(fetch)
            if fetch.ready.done() and not fetch.ready.cancelled():
                fetch.ready.exception()  # retrieved: no "never retrieved" warning when no request waited
            if leased:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.meta.release_lease(name, self.holder))

    def _forget(self, fetch: _Fetch) -> None:
        if self._fetches.get(fetch.digest) is fetch:
            del self._fetches[fetch.digest]

    async def _renew(self, name: str) -> None:
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            with contextlib.suppress(Exception):  # a database hiccup: the next renewal may pass
                await self.meta.acquire_lease(name, self.holder, LEASE_SECONDS)

    async def _lead_or_wait(self, fetch: _Fetch) -> bool:
        """True once this process holds the fetch's lease; False when it should stream without it
        (waited too long) or the blob arrived in the store (then ``fetch.from_store``)."""
        name = lease_name(fetch.digest)
        deadline = time.monotonic() + WAIT_SECONDS
        next_try = 0.0
        pause = POLL_SECONDS
        while True:
            if time.monotonic() >= next_try:
                if await self.meta.acquire_lease(name, self.holder, LEASE_SECONDS):
                    # the holder before may have stored it just before giving the lease up
                    if await self._arrived(fetch):
                        await self.meta.release_lease(name, self.holder)
                        return False
                    return True
                next_try = time.monotonic() + LEASE_POLL_SECONDS
            if await self._arrived(fetch):
                return False
            if time.monotonic() >= deadline:
                log.warning("upstream %s: %s is fetched by another process for over %.0f s: streaming it uncached",
                            fetch.upstream.name, fetch.digest, WAIT_SECONDS)
                fetch.storing = False
                return False
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, MAX_POLL_SECONDS)

    async def _arrived(self, fetch: _Fetch) -> bool:
        """Whether another process stored the blob; if so, it is linked and read from the store."""
        size = await self.meta.blob_size(str(fetch.digest))
        if size is None:
            return False
        if not await self._link_stored(fetch.repository, fetch.digest, fetch.upstream, fetch.upstream_repository):
            return False
        await self._link_followers(fetch)
        fetch.from_store = True
        fetch.finished = True
        fetch.stored.set()
        fetch.ready.set_result(size)
        fetch.notify()
        return True

    async def _link_followers(self, fetch: _Fetch) -> None:
        """Link the stored blob into the repositories of the requests that joined the fetch; then forget
        the fetch, with no pause between, so that later requests find the blob in the store instead."""
        while fetch.also_link:
            pending = sorted(fetch.also_link)
            fetch.also_link.clear()
            for repository in pending:
                await self._link(repository, fetch.digest)
        self._forget(fetch)

    async def _transfer(self, fetch: _Fetch) -> None:
        """GET the blob; publish its chunks while they are written to an upload session; commit."""
        blob = await fetch.upstream.open_blob(fetch.upstream_repository, fetch.digest)
        try:
            size = blob.size
            if size is None:
                size = await fetch.upstream.blob_size(fetch.upstream_repository, fetch.digest)
            upload_id = None
            if fetch.storing:
                try:
                    upload_id = await self.uploads.start(fetch.repository, fetch.digest.algorithm)
                except Exception as exc:  # the store refuses (full, read-only): the client still gets the blob
                    log.warning("upstream %s: %s is streamed uncached: %s", fetch.upstream.name, fetch.digest, exc)
                    fetch.storing = False
            if upload_id is not None:
                await self._store(fetch, blob, size, upload_id)
            else:
                fetch.ready.set_result(size)
                await self._pass(fetch, blob)
        finally:
            await blob.close()

    async def _store(self, fetch: _Fetch, blob: UpstreamBlob, size: int, upload_id: str) -> None:
        """Store the blob from one worker thread (:meth:`Uploads.append_read`: it reads, hashes and writes each
        piece in turn), which hands every piece but the last to the readers as it is written; the last goes once
        the digest is verified. A small blob's pieces all wait, and its commit comes first (see
        :data:`SMALL_BLOB`); a larger one's commit follows without holding the readers."""
        loop = asyncio.get_running_loop()
        held: list[bytes] = []  # not published yet: the last piece, or every piece of a small blob
        arrived = 0

        def on_piece(piece: bytes) -> None:  # in the worker thread
            nonlocal arrived
            arrived += len(piece)
            held.append(piece)
            if arrived > SMALL_BLOB:
                ready = held[:-1]
                del held[:-1]
                if ready:
                    loop.call_soon_threadsafe(self._publish, fetch, ready, size)

        committed = False
        try:
            record = await self.meta.upload(upload_id)
            assert record is not None
            try:
                received, hasher = await self.uploads.append_read(record, blob.read, size, on_piece)
            except SizeInvalid as exc:
                raise UpstreamError(f"upstream {fetch.upstream.name}: {fetch.upstream_repository}@{fetch.digest}:"
                                    f" {exc.message}") from None
            actual = hasher.digest()
            if actual != fetch.digest:
                raise UpstreamError(f"upstream {fetch.upstream.name}: {fetch.upstream_repository}@{fetch.digest}:"
                                    f" the bytes sent hash to {actual}")
            small = size <= SMALL_BLOB
            if small:  # kept before its first byte goes out (see SMALL_BLOB)
                committed = await self._commit(fetch, record, received, hasher)
            self._publish(fetch, held, size)
            fetch.finished = True
            fetch.notify()
            if not small:
                committed = await self._commit(fetch, record, received, hasher)
        finally:
            if not committed:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.uploads.cancel(upload_id))

    @staticmethod
    def _publish(fetch: _Fetch, pieces: list[bytes], size: int) -> None:
        if fetch.error is not None:
            return
        if not fetch.ready.done():
            fetch.ready.set_result(size)
        for piece in pieces:
            fetch.publish(piece)

    async def _commit(self, fetch: _Fetch, record: UploadRecord, received: int, hasher: ResumableHasher) -> bool:
        """Commit verified bytes; link the blob into the repositories of the requests that joined. False if it
        could not be kept (a full disk): it is served all the same."""
        committed = False
        try:
            await self.uploads.finish(record, fetch.digest, received, hasher)
            committed = True
        except Exception as exc:
            log.warning("upstream %s: %s could not be stored: %s", fetch.upstream.name, fetch.digest, exc)
            fetch.storing = False
        if committed:  # linked into fetch.repository by the commit
            await self._link_followers(fetch)
        fetch.stored.set()
        return committed

    async def _pass(self, fetch: _Fetch, blob: UpstreamBlob) -> None:
        """Stream without storing (read-only mode, or another process holds the fetch too long); the digest
        is still checked."""
        hasher = hashlib.new(fetch.digest.algorithm)
        last: bytes | None = None
        async for chunk in blob.chunks():
            if last is not None:
                fetch.publish(last)
            await asyncio.to_thread(hasher.update, chunk)
            last = chunk
        if hasher.hexdigest() != fetch.digest.hex:
            raise UpstreamError(f"upstream {fetch.upstream.name}: {fetch.upstream_repository}@{fetch.digest}:"
                                " the bytes sent do not match the digest")
        if last is not None:
            fetch.publish(last)
        fetch.finished = True
        fetch.stored.set()  # (not stored: readers that fell behind are told so)
        fetch.notify()

    # -- readers ------------------------------------------------------------------------------------

    async def _read(self, fetch: _Fetch) -> AsyncIterator[bytes]:
        """The blob from byte 0: chunks as they arrive, the store for what is no longer held."""
        number = position = 0
        while True:
            if fetch.error is not None:
                raise fetch.error
            if number < fetch.first_no:
                break  # fell behind the window
            if number < fetch.next_no:
                chunk = fetch.chunks[number - fetch.first_no]
                number += 1
                position += len(chunk)
                yield chunk
                continue
            if fetch.finished:
                return
            await fetch.changed()
        fell_behind = UpstreamError(f"blob {fetch.digest}: the reader fell behind a stream that is not stored")
        if not fetch.storing:
            raise fell_behind
        await fetch.stored.wait()
        if fetch.error is not None:
            raise fetch.error
        if not fetch.storing:
            raise fell_behind
        async for chunk in self.store.read(fetch.digest, position):
            yield chunk


async def _closing(blob: UpstreamBlob) -> AsyncIterator[bytes]:
    try:
        async for chunk in blob.chunks():
            yield chunk
    finally:
        await blob.close()
