"""What the HTTP API asks of a registry: one interface for a wrapper (events) or another implementation (a proxy)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol

from ..digest import Digest
from ..formats import Descriptor
from ..reference import ManifestReference
from .accepts import Accepts
from .blobs import BlobBody
from .common import RegistryOptions
from .manifests import BodyReader, ManifestContent, StoredManifest


class RegistryService(Protocol):
    """Registry rules, by noun; raises :class:`cargohold.errcodes.RegistryError` and knows nothing of HTTP.

    Digests arrive as the client wrote them (each method answers DIGEST_INVALID
    for a malformed one, in its own order of checks); manifest references
    arrive parsed.
    """

    @property
    def options(self) -> RegistryOptions: ...

    @property
    def chunk_min_length(self) -> int | None:
        """The smallest upload chunk the blob store takes without extra work (``OCI-Chunk-Min-Length``)."""
        ...

    async def close(self) -> None: ...

    async def failed_checks(self) -> dict[str, str]:
        """Which check ("database", "blobs", "jobs") fails, and why; empty when all can serve. Each check's
        result is reused for a moment (:mod:`.readiness`)."""
        ...

    async def purge_uploads(self) -> int:
        """Remove abandoned upload sessions; how many there were."""
        ...

    # blobs

    async def blob_size(self, repository: str, digest_text: str) -> tuple[Digest, int]: ...

    async def blob_body(self, digest: Digest, start: int = 0, length: int | None = None) -> BlobBody: ...

    async def pull_through_blob_size(self, repository: str, digest_text: str) -> tuple[Digest, int]:
        """A blob the repository does not link: its size upstream if the repository is a pull-through
        cache's (BLOB_UNKNOWN otherwise, or if the upstream does not have it either)."""
        ...

    async def pull_through_blob(
        self, repository: str, digest_text: str, start: int = 0, length: int | None = None,
    ) -> tuple[Digest, int, AsyncIterator[bytes] | None]:
        """A blob the repository does not link, fetched from its upstream (and cached, unless a range of it
        is asked for): its digest, its whole size, and the bytes ``start`` .. ``start + length``; or None
        for the bytes once the repository links the blob: it is then sent as any stored blob is."""
        ...

    def blob_pulled(self, repository: str, digest: Digest, size: int) -> None:
        """A blob GET served it: recorded (batched, no I/O here) if the configuration records blob pulls."""
        ...

    async def delete_blob(self, repository: str, digest_text: str) -> None: ...

    async def mount_blob(self, repository: str, source: str, digest_text: str) -> Digest | None: ...

    async def mount_found_blob(
        self, repository: str, digest_text: str, may_pull: Callable[[str], bool]
    ) -> Digest | None: ...

    # uploads

    async def start_upload(self, repository: str, algorithm: str) -> str: ...

    async def upload_blob(
        self, repository: str, digest_text: str, body: AsyncIterator[bytes], length: int | None, algorithm: str | None
    ) -> Digest:
        """A monolithic upload, hashed as ``algorithm`` or else as ``digest_text`` names."""
        ...

    async def upload_size(self, repository: str, upload_id: str) -> int: ...

    async def append_upload(
        self, repository: str, upload_id: str, body: AsyncIterator[bytes], start: int | None, length: int | None
    ) -> int: ...

    async def complete_upload(
        self, repository: str, upload_id: str, digest_text: str, body: AsyncIterator[bytes], length: int | None
    ) -> Digest: ...

    async def cancel_upload(self, repository: str, upload_id: str) -> None: ...

    # manifests and tags

    async def get_manifest(
        self, repository: str, reference: ManifestReference, accepts: Accepts
    ) -> ManifestContent: ...

    def manifest_pulled(self, repository: str, reference: ManifestReference, found: ManifestContent) -> None:
        """A manifest GET served ``found``: recorded in the next batch of reads (no I/O here)."""
        ...

    async def put_manifest(
        self,
        repository: str,
        reference: ManifestReference,
        content_type: str | None,
        declared_length: int | None,
        read: BodyReader,
        tags: Sequence[str] = (),
    ) -> StoredManifest: ...

    async def delete_manifest(self, repository: str, reference: ManifestReference) -> None: ...

    async def tags(self, repository: str, limit: int | None, last: str | None) -> list[str]: ...

    # catalog and referrers

    async def catalog(self, limit: int | None, last: str | None) -> list[str]: ...

    async def catalog_where(self, keep: Callable[[str], bool], limit: int | None, last: str | None) -> list[str]: ...

    async def referrers(self, repository: str, digest_text: str, artifact_type: str | None) -> list[Descriptor]: ...
