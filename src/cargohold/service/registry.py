"""The registry over one blob store and one metadata store: a facade over the service's parts, one per noun."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from functools import partial
from typing import Any

from ..digest import Digest
from ..errcodes import BlobUnknown
from ..events.recorder import Recorder
from ..formats import Descriptor
from ..formats.schema1 import PrivateKey, generate_key
from ..metadata.store import MetadataStore
from ..reference import ManifestReference
from ..storage.driver import BlobStore, ChunkMinimum
from .accepts import Accepts
from .blob_uploads import BlobUploads
from .blobs import MOUNT_SCAN, BlobBody, Blobs
from .catalog import CATALOG_SCAN, Catalog
from .common import Guard, RegistryOptions, parse_digest
from .manifests import BodyReader, ManifestContent, Manifests, StoredManifest
from .pulls import PullTimes
from .readiness import Check, Readiness
from .referrers import Referrers
from .schema1_legacy import LegacySchema1
from .tags import Tags
from .uploads import DEFAULT_ALGORITHM


class Registry:
    """The :class:`~cargohold.service.protocol.RegistryService` the server runs.

    The reads of every pull (``blob_size``, ``get_manifest``) hand back their
    part's coroutine rather than awaiting it, which saves a frame per request.
    """

    def __init__(
        self, blobs: BlobStore, meta: MetadataStore, options: RegistryOptions, schema1_key: PrivateKey | None = None,
        recorder: Recorder | None = None, pulls: PullTimes | None = None,
    ):
        """``schema1_key`` signs the schema 1 manifests made for legacy clients (default: one for this process);
        ``pulls`` holds manifest pull times until they are written (None: not recorded)."""
        self.blob_store = blobs
        self.meta = meta
        self._options = options
        #: every change's event is recorded through it, in the change's transaction; reads are batched
        self.recorder = recorder or Recorder()
        guard = Guard(options)
        self.blobs = Blobs(blobs, meta, guard, self.recorder)
        self.uploads = BlobUploads(blobs, meta, guard, self.recorder)
        schema1 = LegacySchema1(
            blobs, meta, self.uploads, schema1_key or generate_key(), max_config_size=options.max_manifest_size
        )
        self.manifests = Manifests(meta, guard, schema1, self.recorder, pulls)
        self.tag_lists = Tags(meta)
        self.repositories = Catalog(meta)
        self.referrer_lists = Referrers(meta)
        #: what /readyz asks: the database and the blob store, and what the server adds (the job leases)
        self._readiness = Readiness()
        self._readiness.add_check("database", meta.check)
        self._readiness.add_check("blobs", partial(blobs.check, writable=not options.read_only))

    @property
    def options(self) -> RegistryOptions:
        return self._options

    @property
    def chunk_min_length(self) -> int | None:
        return self.blob_store.min_chunk if isinstance(self.blob_store, ChunkMinimum) else None

    async def close(self) -> None:
        await self.meta.close()

    def add_check(self, name: str, check: Check) -> None:
        """Have readiness depend on ``check`` too (it raises while its part cannot serve), under ``name``."""
        self._readiness.add_check(name, check)

    async def failed_checks(self) -> dict[str, str]:
        return await self._readiness.failed()

    async def purge_uploads(self) -> int:
        return await self.uploads.purge()

    def blob_size(self, repository: str, digest_text: str) -> Coroutine[Any, Any, tuple[Digest, int]]:
        return self.blobs.size(repository, digest_text)

    async def pull_through_blob_size(self, repository: str, digest_text: str) -> tuple[Digest, int]:
        raise BlobUnknown(detail={"digest": str(parse_digest(digest_text))})

    async def pull_through_blob(
        self, repository: str, digest_text: str, start: int = 0, length: int | None = None,
    ) -> tuple[Digest, int, AsyncIterator[bytes] | None]:
        raise BlobUnknown(detail={"digest": str(parse_digest(digest_text))})

    async def blob_body(self, digest: Digest, start: int = 0, length: int | None = None) -> BlobBody:
        return await self.blobs.body(digest, start, length)

    def blob_pulled(self, repository: str, digest: Digest, size: int) -> None:
        self.blobs.pulled(repository, digest, size)

    async def delete_blob(self, repository: str, digest_text: str) -> None:
        await self.blobs.delete(repository, digest_text)

    async def mount_blob(self, repository: str, source: str, digest_text: str) -> Digest | None:
        return await self.blobs.mount(repository, source, digest_text)

    async def mount_found_blob(
        self, repository: str, digest_text: str, may_pull: Callable[[str], bool], *, scan: int = MOUNT_SCAN
    ) -> Digest | None:
        return await self.blobs.mount_found(repository, digest_text, may_pull, scan=scan)

    async def start_upload(self, repository: str, algorithm: str = DEFAULT_ALGORITHM) -> str:
        return await self.uploads.start(repository, algorithm)

    async def upload_blob(
        self,
        repository: str,
        digest_text: str,
        body: AsyncIterator[bytes],
        length: int | None,
        algorithm: str | None = None,
    ) -> Digest:
        return await self.uploads.monolithic(repository, digest_text, body, length, algorithm)

    async def upload_size(self, repository: str, upload_id: str) -> int:
        return await self.uploads.size(repository, upload_id)

    async def append_upload(
        self, repository: str, upload_id: str, body: AsyncIterator[bytes], start: int | None, length: int | None
    ) -> int:
        return await self.uploads.append(repository, upload_id, body, start, length)

    async def complete_upload(
        self, repository: str, upload_id: str, digest_text: str, body: AsyncIterator[bytes], length: int | None
    ) -> Digest:
        return await self.uploads.complete(repository, upload_id, digest_text, body, length)

    async def cancel_upload(self, repository: str, upload_id: str) -> None:
        await self.uploads.cancel(repository, upload_id)

    def get_manifest(
        self, repository: str, reference: ManifestReference, accepts: Accepts
    ) -> Coroutine[Any, Any, ManifestContent]:
        return self.manifests.get(repository, reference, accepts)

    def manifest_pulled(self, repository: str, reference: ManifestReference, found: ManifestContent) -> None:
        self.manifests.pulled(repository, reference, found)

    async def put_manifest(
        self,
        repository: str,
        reference: ManifestReference,
        content_type: str | None,
        declared_length: int | None,
        read: BodyReader,
        tags: Sequence[str] = (),
    ) -> StoredManifest:
        return await self.manifests.put(repository, reference, content_type, declared_length, read, tags)

    async def delete_manifest(self, repository: str, reference: ManifestReference) -> None:
        await self.manifests.delete(repository, reference)

    async def tags(self, repository: str, limit: int | None, last: str | None) -> list[str]:
        return await self.tag_lists.page(repository, limit, last)

    async def catalog(self, limit: int | None, last: str | None) -> list[str]:
        return await self.repositories.page(limit, last)

    async def catalog_where(
        self, keep: Callable[[str], bool], limit: int | None, last: str | None, *, scan: int = CATALOG_SCAN
    ) -> list[str]:
        return await self.repositories.page_where(keep, limit, last, scan=scan)

    async def referrers(self, repository: str, digest_text: str, artifact_type: str | None) -> list[Descriptor]:
        return await self.referrer_lists.find(repository, digest_text, artifact_type)
