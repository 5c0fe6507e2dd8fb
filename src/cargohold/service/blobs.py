"""Blobs: their size and bytes as a repository links them, unlinking, and mounting from another repository."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Final

from ..digest import Digest
from ..errcodes import BlobUnknown
from ..events import Action, Event
from ..events.recorder import Recorder
from ..metadata.store import MetadataStore
from ..reference import is_repository_name
from ..storage.driver import BlobStore, LocalFileServer, Redirector
from .common import Guard, check_name, parse_digest, repository_id

#: repository names read per step when looking for a repository to mount a blob from
MOUNT_SCAN: Final = 1000


@dataclass(frozen=True, slots=True)
class BlobBody:
    """How to send a blob (or a range of it): a local file path, a stream, or a URL to send the client to."""

    size: int
    local_path: str | None
    stream: AsyncIterator[bytes] | None
    redirect: str | None = None


class _NotMounted(Exception):
    """The blob went away before it was linked: the mount's transaction is rolled back."""


class Blobs:
    def __init__(self, store: BlobStore, meta: MetadataStore, guard: Guard, recorder: Recorder | None = None):
        self.store = store
        self.meta = meta
        self.guard = guard
        self.recorder = recorder or Recorder()
        self._local = store if isinstance(store, LocalFileServer) else None
        self._redirector = store if isinstance(store, Redirector) else None

    async def size(self, repository: str, digest_text: str) -> tuple[Digest, int]:
        digest = parse_digest(digest_text)
        size = await self.meta.linked_blob_size(repository, str(digest))
        if size is None:
            raise BlobUnknown(detail={"digest": str(digest)})
        return digest, size

    async def body(self, digest: Digest, start: int = 0, length: int | None = None) -> BlobBody:
        if self._redirector is not None:
            url = await self._redirector.redirect_url(digest)
            if url is not None:  # the client sends its Range there
                return BlobBody(0, None, None, url)
        if self._local is not None and start == 0 and length is None:
            size = await self._local.stat(digest)
            if size is None:
                raise BlobUnknown("blob bytes are missing from storage", detail={"digest": str(digest)})
            return BlobBody(size, self._local.local_path(digest), None)
        # the first bytes are read before the answer starts: a store that fails (or does not answer)
        # makes the answer an error, not a 200 cut short
        stream = self.store.read(digest, start, length)
        first = await anext(stream, None)
        return BlobBody(length or 0, None, _chained(first, stream))

    async def delete(self, repository: str, digest_text: str) -> None:
        self.guard.check_deletable()
        digest = parse_digest(digest_text)
        found = await repository_id(self.meta, repository)
        async with self.meta.transaction() as tx:
            if not await tx.unlink_blob(found, str(digest)):
                raise BlobUnknown(detail={"digest": str(digest)})
            await self.recorder.record(tx, Event.now(Action.BLOB_DELETE, repository=repository, digest=str(digest)))

    def pulled(self, repository: str, digest: Digest, size: int) -> None:
        """A blob GET: held for the next batch of reads if the configuration records blob pulls."""
        if self.recorder.blob_pulls:
            self.recorder.read(Action.BLOB_PULL, repository=repository, digest=str(digest), size=size)

    async def mount(self, repository: str, source: str, digest_text: str) -> Digest | None:
        """Link a blob from ``source`` into ``repository``; None if it is not there to mount."""
        self.guard.check_writable()
        check_name(repository)
        digest = parse_digest(digest_text)
        if not is_repository_name(source) or await self.meta.linked_blob_size(source, str(digest)) is None:
            return None
        return await self._link(repository, digest, source)

    async def mount_found(
        self, repository: str, digest_text: str, may_pull: Callable[[str], bool], *, scan: int = MOUNT_SCAN
    ) -> Digest | None:
        """Link a blob into ``repository`` from any repository ``may_pull`` accepts; None if there is none.

        A blob linked only where the caller may not pull is not mounted: the
        answer is then the same as for a blob the registry does not hold.
        """
        self.guard.check_writable()
        check_name(repository)
        digest = parse_digest(digest_text)
        cursor: str | None = None
        while True:
            names = await self.meta.repositories_with_blob(str(digest), scan, cursor)
            source = next((name for name in names if may_pull(name)), None)
            if source is not None:
                return await self._link(repository, digest, source)
            if len(names) < scan:
                return None
            cursor = names[-1]

    async def _link(self, repository: str, digest: Digest, source: str) -> Digest | None:
        """Link the blob, creating the repository if need be, with their events; None (and nothing
        changed) if the blob is gone."""
        try:
            async with self.meta.transaction() as tx:
                found = await tx.repository_id(repository)
                if found is None:
                    found = await tx.ensure_repository(repository)
                    await self.recorder.record(tx, Event.now(Action.REPOSITORY_CREATE, repository=repository))
                if not await tx.link_blob(found, str(digest)):
                    raise _NotMounted
                size = await tx.blob_size(str(digest))
                await self.recorder.record(tx, Event.now(
                    Action.BLOB_MOUNT, repository=repository, digest=str(digest), size=size, detail={"from": source},
                ))
        except _NotMounted:
            return None
        return digest


async def _chained(first: bytes | None, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first is None:
        return
    yield first
    async for chunk in rest:
        yield chunk
