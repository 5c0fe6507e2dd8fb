"""Blob upload sessions: receive bytes, hash each byte once as it arrives, commit.

The request body is gathered into batches of at least :data:`WRITE_BATCH`
bytes (the server's own chunks, never copied into one buffer). Each batch is
hashed in one worker thread and written in another, both beside the event loop,
which meanwhile receives the next batch: hashing (~1.5 GB/s) and writing then
overlap instead of adding up. Each thread takes the batches in order, one at a
time, so every byte is hashed exactly once and in order.

The hash state is saved with the token the store's writer reported for the
request's bytes; the store alone judges later (``state_trusted``) whether the
bytes behind it are still as written. A state it does not trust, or one the
hasher cannot read (another version or machine), is rebuilt from the bytes the
store holds, which the digest check at the end then judges. A store that cannot
read an unfinished upload back (:class:`UploadReader`) cannot rebuild: the
session is then dropped and the client is told to start the upload again.

Progress (size and hash state) is recorded only after a request's bytes are
all written, so an interrupted request leaves the session at its previous size
and the client can resume from there, in another process or after a restart.

The commit of a finished upload is a sequence of steps, each safe to repeat, so
a crash at any point leaves a state that a retried final ``PUT`` (or, if no
retry comes, the purge of abandoned uploads) carries to the end:

1. the bytes are hashed and made durable (``upload_sync``);
2. the final size and verified digest are recorded on the session row (``begin_upload_commit``):
   from here on the session is finished and is only ever completed, never undone;
3. the bytes are placed at the blob's address (``upload_commit``);
4. in one transaction, the blob is recorded and linked into the repository
   (``add_blob``) and the session row is marked completed (``complete_upload``);
   the row stays until the purge, so a final ``PUT`` retried after a lost answer
   is answered again.

A full disk fails a request with :class:`InsufficientStorage` and cancels its
upload session, which frees the space its bytes took.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Final

from ..digest import Digest
from ..errcodes import (
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    InsufficientStorage,
    RangeInvalid,
    SizeInvalid,
)
from ..events import Action, Event
from ..events.recorder import Recorder
from ..faults import crash_point
from ..metadata.store import MetadataStore, UploadConflict, UploadRecord
from ..storage.driver import BlobStore, BlobWriter, SizeLimit, UploadBusy, UploadMissing, UploadReader
from ..storage.hashing import ResumableHasher, UnreadableHashState

#: the digest algorithm of uploads that do not name one (``digest-algorithm``)
DEFAULT_ALGORITHM: Final = "sha256"
#: bytes handed to the hashing and writing threads at once: big enough that the
#: thread hops cost nothing, small enough to keep memory flat (two batches per upload)
WRITE_BATCH: Final = 1 << 20
#: the most bytes :meth:`Uploads.append_read` asks of one read: under the server's mmap threshold
#: (:func:`cargohold.api.server.tune_allocator`), so that the buffer comes from the heap, whose pages stay
#: mapped for the next one, not from a mapping of its own whose every page faults in
READ_SIZE: Final = (1 << 20) - (4 << 10)


def new_upload_id() -> str:
    return secrets.token_hex(16)


async def _batches(body: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    pending: list[bytes] = []
    held = 0
    async for chunk in body:
        if not chunk:
            continue
        pending.append(chunk)
        held += len(chunk)
        if held >= WRITE_BATCH:
            yield pending
            pending, held = [], 0
    if pending:
        yield pending


def _hash(hasher: ResumableHasher, batch: list[bytes]) -> None:
    for chunk in batch:
        hasher.update(chunk)


def _write(writer: BlobWriter, batch: list[bytes]) -> None:
    for chunk in batch:
        writer.write(chunk)


def _saved_state(token: str, state: bytes) -> bytes:
    """What the session row keeps: the store's token of the bytes, then the hasher's state."""
    return token.encode() + b"\n" + state


def _split_state(saved: bytes) -> tuple[str, bytes] | None:
    """(token, state) of a saved row; None for a row without a token (older builds wrote none; one
    that happens to hold a newline gives a token no store trusts or a state the hasher refuses)."""
    token, newline, state = saved.partition(b"\n")
    return (token.decode("utf-8", "replace"), state) if newline else None


class Uploads:
    """Upload sessions of every repository (ids are global, rows name their repository)."""

    def __init__(self, blobs: BlobStore, meta: MetadataStore, recorder: Recorder | None = None):
        self.blobs = blobs
        self.meta = meta
        self.recorder = recorder or Recorder()
        #: the store's largest blob, if it has one (a Protocol's isinstance costs ~20 us: once, not per request)
        self._max_size = blobs.max_size if isinstance(blobs, SizeLimit) else None

    async def start(self, repository: str, algorithm: str = DEFAULT_ALGORITHM) -> str:
        """A new session hashing with ``algorithm`` (a supported one, checked by the caller)."""
        upload_id = new_upload_id()
        await self.blobs.upload_start(upload_id)
        try:
            await self.meta.create_upload(upload_id, repository, algorithm)
        except BaseException:
            await self.blobs.upload_delete(upload_id)
            raise
        return upload_id

    @staticmethod
    def check_digest(record: UploadRecord, digest: Digest) -> None:
        """An upload started for another algorithm (``digest-algorithm``) completes only with such a digest.

        Uploads of the default algorithm still take any supported digest at
        the end (then hashed again from the stored bytes), as before.
        """
        if record.algorithm != DEFAULT_ALGORITHM and digest.algorithm != record.algorithm:
            raise DigestInvalid(
                f"upload was started for {record.algorithm}, not {digest.algorithm}",
                detail={"algorithm": record.algorithm, "digest": str(digest)},
            )

    async def get(self, repository: str, upload_id: str) -> UploadRecord:
        """A session that still takes bytes (not one whose commit began)."""
        record = await self.session(repository, upload_id)
        if record.digest is not None:
            raise BlobUploadUnknown("upload is already complete", detail={"uuid": upload_id})
        return record

    async def session(self, repository: str, upload_id: str) -> UploadRecord:
        """Any session row of ``repository``, finished ones included."""
        record = await self.meta.upload(upload_id)
        if record is None or record.repository != repository:
            raise BlobUploadUnknown(detail={"uuid": upload_id})
        return record

    @contextlib.asynccontextmanager
    async def exclusive(self, repository: str, upload_id: str) -> AsyncIterator[UploadRecord]:
        """The session, for one request at a time; another request on it meanwhile is refused.

        Two requests appending at once would both write at the same offset of the same bytes: the
        loser's bytes would land in the winner's, under the winner's hash state. The record is read
        under the lock, so it is never one that another request has since moved on.
        """
        await self.get(repository, upload_id)  # an unknown session is a 404 before anything else
        try:
            lock = await self.blobs.upload_lock(upload_id)
        except UploadBusy:
            raise BlobUploadInvalid("another request on this upload is in progress",
                                    detail={"uuid": upload_id}) from None
        except UploadMissing:
            raise BlobUploadUnknown("upload data is gone", detail={"uuid": upload_id}) from None
        try:
            yield await self.get(repository, upload_id)
        finally:
            await lock.release()

    async def append(
        self,
        record: UploadRecord,
        body: AsyncIterator[bytes],
        *,
        start: int | None = None,
        length: int | None = None,
        final: bool = False,
    ) -> tuple[int, ResumableHasher]:
        """Append a request body at the upload's current size; returns (new size, hasher).

        ``start`` (from Content-Range) must equal the current size; ``length``
        (Content-Length or the range's length) must match what arrives. The new
        size of a ``final`` request (the body of the completing PUT) is recorded
        only with its digest, by :meth:`finish`: if the server dies before that,
        the resent PUT finds the session as it was before the first.
        """
        if start is not None and start != record.size:
            raise RangeInvalid(
                f"chunk starts at {start}, upload has {record.size} bytes", detail={"size": record.size}
            )
        self._check_size(record, length)
        hasher = await self._hasher(record)
        writer = await self._writer(record)
        loop = asyncio.get_running_loop()
        received = 0
        # at most one batch in each thread; the next is only handed over when the previous is done
        hashing: asyncio.Future[None] | None = None
        writing: asyncio.Future[None] | None = None
        try:
            async for batch in _batches(body):
                received += sum(len(chunk) for chunk in batch)
                if length is not None and received > length:
                    raise SizeInvalid(f"body is longer than the declared {length} bytes")
                if hashing is not None:
                    await hashing
                if writing is not None:
                    await writing
                hashing = loop.run_in_executor(None, _hash, hasher, batch)
                writing = loop.run_in_executor(None, _write, writer, batch)
            if hashing is not None:
                await hashing
            if writing is not None:
                await writing
            hashing = writing = None
            if length is not None and received != length:
                raise SizeInvalid(f"received {received} bytes, expected {length}")
            size, token = await asyncio.to_thread(writer.close)
        except BaseException as exc:
            await asyncio.gather(*(f for f in (hashing, writing) if f is not None), return_exceptions=True)
            await self._abort(record, writer, exc)
            raise
        if final:
            return size, hasher
        state = hasher.state()
        saved = None if state is None else _saved_state(token, state)
        try:
            await self.meta.update_upload(record.id, record.size, size, saved)
        except UploadConflict:
            raise BlobUploadInvalid("upload was changed by a concurrent request") from None
        return size, hasher

    async def append_read(
        self, record: UploadRecord, read: Callable[[int], bytes], length: int, on_piece: Callable[[bytes], None]
    ) -> tuple[int, ResumableHasher]:
        """The final bytes of an upload from ``read`` (blocking: the next bytes, at most as many as asked,
        b"" at the end), ``length`` of them; returns (new size, hasher), for :meth:`finish`.

        For a body a thread can read by itself (a pull-through cache's upstream): one worker thread reads,
        hashes and writes each piece in turn, then hands it to ``on_piece`` (in that thread). That costs far
        less CPU than :meth:`append`'s batches and threads, though reading waits while a piece is hashed and
        written. The pieces are the ``bytes`` the reads return, kept under the allocator's 1 MiB mmap threshold
        (:data:`READ_SIZE`): a copy into pages reused from the heap (a read joining a few ``recv`` results) holds
        the interpreter's lock about 55 µs per MiB, one into freshly mapped pages ten times as long.
        """
        self._check_size(record, length)
        hasher = await self._hasher(record)
        writer = await self._writer(record)

        def pump() -> int:
            received = 0
            while piece := read(READ_SIZE):
                received += len(piece)
                if received > length:
                    raise SizeInvalid(f"body is longer than the declared {length} bytes")
                hasher.update(piece)
                writer.write(piece)
                on_piece(piece)
            if received != length:
                raise SizeInvalid(f"received {received} bytes, expected {length}")
            return writer.close().size

        try:
            size = await asyncio.to_thread(pump)
        except BaseException as exc:
            await self._abort(record, writer, exc)
            raise
        return size, hasher

    def _check_size(self, record: UploadRecord, length: int | None) -> None:
        limit = self._max_size
        if length is not None and limit is not None and record.size + length > limit:
            raise SizeInvalid(f"the blob would be {record.size + length} bytes, larger than this registry's"
                              f" storage takes: {limit} bytes", detail={"limit": limit})

    async def _writer(self, record: UploadRecord) -> BlobWriter:
        try:
            return await self.blobs.upload_writer(record.id, record.size)
        except UploadMissing:
            raise BlobUploadUnknown("upload data is gone", detail={"uuid": record.id}) from None

    async def _abort(self, record: UploadRecord, writer: BlobWriter, exc: BaseException) -> None:
        """After a failed write: forget the request's bytes; a full disk also ends the session (its bytes free
        space; the client starts over anyway), and a session cancelled meanwhile is told as such."""
        await asyncio.to_thread(writer.abort)
        if isinstance(exc, InsufficientStorage):
            await self.cancel(record.id)
        if isinstance(exc, UploadMissing):  # cancelled by another request while this one wrote
            raise BlobUploadInvalid("upload was changed by a concurrent request") from None

    async def _hasher(self, record: UploadRecord) -> ResumableHasher:
        saved = _split_state(record.hash_state) if record.hash_state is not None else None
        if saved is not None and self.blobs.state_trusted(saved[0]):
            with contextlib.suppress(UnreadableHashState):  # another build's or machine's: rebuilt below
                return ResumableHasher(record.algorithm, saved[1])
        if not record.size:
            return ResumableHasher(record.algorithm)
        # No saved state (libcrypto missing), one from before a system crash, or one this build
        # cannot read: rebuild it from the bytes so far.
        return await self._rehash(record.id, record.size, record.algorithm,
                                  "the upload's progress cannot be resumed here: start the upload again")

    async def _rehash(self, upload_id: str, size: int, algorithm: str, refusal: str) -> ResumableHasher:
        """Hash an upload's first ``size`` bytes again; a store that cannot read them back drops the session."""
        if not isinstance(self.blobs, UploadReader):
            await self.cancel(upload_id)
            raise BlobUploadUnknown(refusal, detail={"uuid": upload_id})
        hasher = ResumableHasher(algorithm)
        try:
            async for chunk in self.blobs.upload_read(upload_id, size):
                await asyncio.to_thread(hasher.update, chunk)
        except UploadMissing:
            raise BlobUploadUnknown("upload data is gone", detail={"uuid": upload_id}) from None
        return hasher

    async def finish(self, record: UploadRecord, digest: Digest, size: int, hasher: ResumableHasher) -> None:
        """Verify the digest and commit the blob (steps in the module docstring); a mismatch cancels the upload."""
        if digest.algorithm != hasher.algorithm:
            hasher = await self._rehash(
                record.id, size, digest.algorithm,
                f"the upload was hashed as {hasher.algorithm} and cannot be read back here to check a"
                f" {digest.algorithm} digest: start it again with digest-algorithm={digest.algorithm}",
            )
        actual = hasher.digest()
        if actual != digest:
            await self.cancel(record.id)
            raise DigestInvalid(
                f"content digest is {actual}, not {digest}", detail={"expected": str(digest), "actual": str(actual)}
            )
        try:
            await self.blobs.upload_sync(record.id)
            crash_point("upload-synced")
            await self.meta.begin_upload_commit(record.id, record.size, size, str(digest))
        except UploadMissing:
            raise BlobUploadUnknown("upload data is gone", detail={"uuid": record.id}) from None
        except UploadConflict:
            raise BlobUploadInvalid("upload was changed by a concurrent request") from None
        except InsufficientStorage:
            await self.cancel(record.id)
            raise
        crash_point("commit-begun")
        try:
            await self._complete(record.id, record.repository, digest, size)
        except InsufficientStorage:
            if await self.blobs.stat(digest) is None:
                # not placed: nothing to keep (once placed, the row is what completes it later)
                await self.blobs.upload_delete(record.id)
                await self.meta.delete_upload(record.id)
            raise

    async def finish_again(self, record: UploadRecord, digest: Digest) -> None:
        """A final PUT for a session whose commit began before (a retry): complete it, same answer."""
        if record.digest != str(digest):
            raise BlobUploadUnknown(
                f"upload was completed with digest {record.digest}", detail={"uuid": record.id}
            )
        if record.completed:
            if await self.meta.linked_blob_size(record.repository, str(digest)) is None:
                raise BlobUploadUnknown("the uploaded blob was deleted since", detail={"uuid": record.id})
            return
        await self._complete(record.id, record.repository, digest, record.size)

    async def _complete(self, upload_id: str, repository: str, digest: Digest, size: int) -> None:
        """Steps 3-4 of a commit; each may be repeated after a crash."""
        try:
            await self.blobs.upload_commit(upload_id, digest)
        except UploadMissing:
            # neither the upload's bytes nor the blob are there: nothing to complete
            await self.meta.delete_upload(upload_id)
            raise BlobUploadUnknown("upload data is gone", detail={"uuid": upload_id}) from None
        crash_point("blob-placed")
        async with self.meta.transaction() as tx:  # a crash inside leaves the commit at "blob placed"
            repository_id = await tx.repository_id(repository)
            if repository_id is None:
                repository_id = await tx.ensure_repository(repository)
                await self.recorder.record(tx, Event.now(Action.REPOSITORY_CREATE, repository=repository))
            await tx.add_blob(repository_id, str(digest), size)
            await self.recorder.record(tx, Event.now(Action.BLOB_PUSH, repository=repository, digest=str(digest),
                                                     size=size))
            crash_point("blob-recorded")
            await tx.complete_upload(upload_id)
        crash_point("upload-completed")

    async def cancel(self, upload_id: str) -> None:
        """Drop an unfinished session; one whose commit began is left to be completed."""
        record = await self.meta.upload(upload_id)
        if record is not None and record.digest is not None:
            return
        # the bytes first: on a full disk, deleting them makes room for the row's deletion
        await self.blobs.upload_delete(upload_id)
        await self.meta.delete_upload(upload_id)

    async def purge(self, max_age_seconds: float) -> int:
        """Remove upload sessions untouched for longer than ``max_age_seconds``.

        Commits that a crash cut short are completed first, and completed sessions
        kept to answer a retried final PUT are dropped. Also removes upload bytes
        that no session row names (a crash between creating the file and
        recording the session), once they are as old.
        """
        cutoff = time.time() - max_age_seconds
        stale = await self.meta.stale_uploads(int(cutoff))
        for upload_id in stale:
            record = await self.meta.upload(upload_id)
            if record is not None and record.digest is not None and not record.completed:
                # A commit cut short by a crash, never retried: its bytes are verified, finish it.
                with contextlib.suppress(BlobUploadUnknown):
                    await self._complete(upload_id, record.repository, Digest.parse(record.digest), record.size)
            await self.blobs.upload_delete(upload_id)
            await self.meta.delete_upload(upload_id)
        orphans = 0
        for upload_id, changed in (await self.blobs.upload_ids()).items():
            if changed < cutoff and await self.meta.upload(upload_id) is None:
                await self.blobs.upload_delete(upload_id)
                orphans += 1
        return len(stale) + orphans
