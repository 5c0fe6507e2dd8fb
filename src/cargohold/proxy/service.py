"""The registry with pull-through caches: ordinary repositories as before, a proxy's filled from its upstream.

Only the reads of repositories under a proxy's prefix take another path (a name test first); every write
to them answers UNSUPPORTED (405): their content is the upstream's. A blob GET or HEAD reaches the upstream
only once the local lookup missed (:meth:`pull_through_blob`, :meth:`pull_through_blob_size`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from typing import Any, NoReturn

from ..digest import Digest
from ..errcodes import BlobUnknown, NameUnknown, Unsupported
from ..events.recorder import Recorder
from ..formats.schema1 import PrivateKey
from ..metadata.store import MetadataStore
from ..metrics import recorder as metrics
from ..reference import ManifestReference
from ..service.accepts import Accepts
from ..service.blobs import MOUNT_SCAN
from ..service.common import RegistryOptions, parse_digest
from ..service.manifests import BodyReader, ManifestContent, StoredManifest
from ..service.pulls import PullTimes
from ..service.registry import Registry
from ..service.uploads import DEFAULT_ALGORITHM
from ..storage.driver import BlobStore
from .blob_fetch import BlobFetches
from .errors import upstream_failure
from .manifests import ProxyManifests
from .routing import ProxyName, ProxyRoutes
from .upstream import Upstream, UpstreamError, UpstreamRefused


def _read_only(repository: str) -> NoReturn:
    raise Unsupported(f"{repository!r} is a read-only pull-through cache of its upstream",
                      detail={"name": repository})


class ProxyingRegistry(Registry):
    def __init__(
        self, blobs: BlobStore, meta: MetadataStore, options: RegistryOptions, routes: ProxyRoutes,
        upstreams: Mapping[str, Upstream], holder: str, schema1_key: PrivateKey | None = None,
        recorder: Recorder | None = None, pulls: PullTimes | None = None,
    ) -> None:
        """``upstreams``: each proxy's, by prefix; ``holder`` names this process in the store's leases."""
        super().__init__(blobs, meta, options, schema1_key, recorder, pulls)
        self.routes = routes
        self.upstreams = dict(upstreams)
        self.proxy_manifests = ProxyManifests(meta, self.manifests, self.recorder, holder)
        self.fetches = BlobFetches(blobs, meta, self.recorder, holder, self.manifests.guard)

    async def close(self) -> None:
        await self.fetches.close()
        for upstream in self.upstreams.values():
            await upstream.close()
        await super().close()

    def _proxied(self, repository: str) -> tuple[ProxyName, Upstream] | None:
        target = self.routes.match(repository)
        return None if target is None else (target, self.upstreams[target.proxy.prefix])

    # reads

    async def blob_size(self, repository: str, digest_text: str) -> tuple[Digest, int]:
        proxied = self.routes.is_proxied(repository)
        try:
            found = await super().blob_size(repository, digest_text)
        except BlobUnknown:
            if proxied:
                metrics.proxy_cache(hit=False)
            raise
        if proxied:
            metrics.proxy_cache(hit=True)
        return found

    def get_manifest(
        self, repository: str, reference: ManifestReference, accepts: Accepts
    ) -> Coroutine[Any, Any, ManifestContent]:
        found = self._proxied(repository)
        if found is None:
            return super().get_manifest(repository, reference, accepts)
        return self.proxy_manifests.get(repository, found[0], found[1], reference, accepts)

    async def tags(self, repository: str, limit: int | None, last: str | None) -> list[str]:
        """A proxy repository lists the upstream's tags when it answers, else the cached ones."""
        found = self._proxied(repository)
        if found is None:
            return await super().tags(repository, limit, last)
        try:
            names = sorted(await found[1].tags(found[0].upstream_name))
        except (UpstreamError, UpstreamRefused) as exc:
            try:
                return await super().tags(repository, limit, last)
            except NameUnknown:
                raise upstream_failure(exc, found[0].proxy.prefix, NameUnknown, {"name": repository}) from None
        if last is not None:
            names = [name for name in names if name > last]
        return names if limit is None else names[:limit]

    async def pull_through_blob_size(self, repository: str, digest_text: str) -> tuple[Digest, int]:
        digest = parse_digest(digest_text)
        found = self._proxied(repository)
        if found is None:
            raise BlobUnknown(detail={"digest": str(digest)})
        target, upstream = found
        try:
            return digest, await upstream.blob_size(target.upstream_name, digest)
        except (UpstreamError, UpstreamRefused) as exc:
            raise upstream_failure(exc, target.proxy.prefix, BlobUnknown, {"digest": str(digest)}) from None

    async def pull_through_blob(
        self, repository: str, digest_text: str, start: int = 0, length: int | None = None,
    ) -> tuple[Digest, int, AsyncIterator[bytes] | None]:
        digest = parse_digest(digest_text)
        found = self._proxied(repository)
        if found is None:
            raise BlobUnknown(detail={"digest": str(digest)})
        target, upstream = found
        try:
            size, chunks = await self.fetches.fetch(repository, digest, upstream, target.upstream_name, start, length)
        except (UpstreamError, UpstreamRefused) as exc:
            raise upstream_failure(exc, target.proxy.prefix, BlobUnknown, {"digest": str(digest)}) from None
        return digest, size, chunks

    # writes: refused under a proxy's prefix

    def _check_writable(self, repository: str) -> None:
        if self.routes.is_proxied(repository):
            _read_only(repository)

    async def delete_blob(self, repository: str, digest_text: str) -> None:
        self._check_writable(repository)
        await super().delete_blob(repository, digest_text)

    async def mount_blob(self, repository: str, source: str, digest_text: str) -> Digest | None:
        self._check_writable(repository)
        return await super().mount_blob(repository, source, digest_text)

    async def mount_found_blob(
        self, repository: str, digest_text: str, may_pull: Callable[[str], bool], *, scan: int = MOUNT_SCAN
    ) -> Digest | None:
        self._check_writable(repository)
        return await super().mount_found_blob(repository, digest_text, may_pull, scan=scan)

    async def start_upload(self, repository: str, algorithm: str = DEFAULT_ALGORITHM) -> str:
        self._check_writable(repository)
        return await super().start_upload(repository, algorithm)

    async def upload_blob(
        self, repository: str, digest_text: str, body: AsyncIterator[bytes], length: int | None,
        algorithm: str | None = None,
    ) -> Digest:
        self._check_writable(repository)
        return await super().upload_blob(repository, digest_text, body, length, algorithm)

    async def append_upload(
        self, repository: str, upload_id: str, body: AsyncIterator[bytes], start: int | None, length: int | None
    ) -> int:
        self._check_writable(repository)
        return await super().append_upload(repository, upload_id, body, start, length)

    async def complete_upload(
        self, repository: str, upload_id: str, digest_text: str, body: AsyncIterator[bytes], length: int | None
    ) -> Digest:
        self._check_writable(repository)
        return await super().complete_upload(repository, upload_id, digest_text, body, length)

    async def put_manifest(
        self, repository: str, reference: ManifestReference, content_type: str | None, declared_length: int | None,
        read: BodyReader, tags: Sequence[str] = (),
    ) -> StoredManifest:
        self._check_writable(repository)
        return await super().put_manifest(repository, reference, content_type, declared_length, read, tags)

    async def delete_manifest(self, repository: str, reference: ManifestReference) -> None:
        self._check_writable(repository)
        await super().delete_manifest(repository, reference)
