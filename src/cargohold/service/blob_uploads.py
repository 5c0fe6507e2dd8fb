"""Pushing blobs: upload sessions as the API drives them (start, append, complete, cancel), and one-request pushes."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..digest import Digest
from ..events.recorder import Recorder
from ..metadata.store import MetadataStore
from ..storage.driver import BlobStore
from .common import Guard, check_name, parse_digest
from .uploads import DEFAULT_ALGORITHM, Uploads


class BlobUploads:
    def __init__(self, store: BlobStore, meta: MetadataStore, guard: Guard, recorder: Recorder | None = None):
        self.guard = guard
        self.uploads = Uploads(store, meta, recorder)

    async def start(self, repository: str, algorithm: str = DEFAULT_ALGORITHM) -> str:
        self.guard.check_writable()
        check_name(repository)
        return await self.uploads.start(repository, algorithm)

    async def monolithic(
        self,
        repository: str,
        digest_text: str,
        body: AsyncIterator[bytes],
        length: int | None,
        algorithm: str | None = None,
    ) -> Digest:
        """A monolithic upload: POST with ``?digest=`` and the whole blob as body, hashed as ``algorithm``
        or else as the digest names (a store that cannot read an upload back could not hash it again)."""
        self.guard.check_writable()
        check_name(repository)
        digest = parse_digest(digest_text)
        upload_id = await self.uploads.start(repository, algorithm or digest.algorithm)
        try:
            record = await self.uploads.get(repository, upload_id)
            self.uploads.check_digest(record, digest)
            size, hasher = await self.uploads.append(record, body, length=length, final=True)
            await self.uploads.finish(record, digest, size, hasher)
        except BaseException:
            await self.uploads.cancel(upload_id)
            raise
        return digest

    async def size(self, repository: str, upload_id: str) -> int:
        """How many bytes the session holds (UPLOAD_UNKNOWN if there is none)."""
        return (await self.uploads.get(repository, upload_id)).size

    async def append(
        self,
        repository: str,
        upload_id: str,
        body: AsyncIterator[bytes],
        start: int | None,
        length: int | None,
    ) -> int:
        self.guard.check_writable()
        async with self.uploads.exclusive(repository, upload_id) as record:
            size, _ = await self.uploads.append(record, body, start=start, length=length)
        return size

    async def complete(
        self, repository: str, upload_id: str, digest_text: str, body: AsyncIterator[bytes], length: int | None
    ) -> Digest:
        self.guard.check_writable()
        digest = parse_digest(digest_text)
        record = await self.uploads.session(repository, upload_id)
        if record.digest is not None:
            # A retry of a PUT whose commit began (its answer was lost, or the server died
            # during it): its body was part of the bytes already verified.
            async for _ in body:
                pass
            await self.uploads.finish_again(record, digest)
            return digest
        async with self.uploads.exclusive(repository, upload_id) as record:
            self.uploads.check_digest(record, digest)
            size, hasher = await self.uploads.append(record, body, length=length, final=True)
            await self.uploads.finish(record, digest, size, hasher)
        return digest

    async def cancel(self, repository: str, upload_id: str) -> None:
        self.guard.check_writable()  # it deletes the session's bytes; Distribution refuses it too
        await self.uploads.get(repository, upload_id)
        await self.uploads.cancel(upload_id)

    async def purge(self) -> int:
        """Remove the sessions abandoned for longer than the options allow; how many there were."""
        return await self.uploads.purge(self.guard.options.upload_max_age_seconds)
