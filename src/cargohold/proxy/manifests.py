"""Manifests of a proxy repository: cached from the upstream, revalidated by tag, served stale when it fails.

By digest: the local copy, else a GET upstream, stored for good (verbatim: the digest is of the bytes).
By tag: the local copy while it was checked within the proxy's ``revalidate``; then a HEAD upstream (which
Docker Hub does not count as a pull) decides: same digest, keep; another, GET that manifest by digest, store
it and move the tag. If the upstream cannot answer (down, timeout, 429, 5xx) or refuses the cache's
credentials, a cached tag is served with a ``Warning`` (and that answer is kept for ``revalidate`` too, so an
upstream that hangs does not hold every pull for its timeout); what was never cached fails
(:func:`~cargohold.proxy.errors.upstream_failure`). An upstream answering 404 for a cached tag is believed.

One check or fetch per manifest at a time: per process, callers share one task (a client that goes away
does not cancel it for the others); across processes, the task holds a lease in the metadata store while it
asks the upstream, and keeps a tag's for ``revalidate`` after a check the upstream answered, so that every
worker and replica sees the tag as checked. A process that finds the lease taken serves its cached copy (and
looks again after :data:`ELSEWHERE_SECONDS`), or, with none, polls the store until the manifest is there,
the lease is free (then takes it) or :data:`FOLLOW_SECONDS` pass (then it asks the upstream itself).

The references of a cached manifest need not be here: its blobs and children come when asked for.

In read-only mode nothing is written: a cached manifest is served as it is (a tag is not checked, since
moving it would be a write), any other is fetched from the upstream and served without being stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from ..digest import Digest
from ..errcodes import ManifestUnknown, NameUnknown, RegistryError, Unavailable
from ..events.recorder import Recorder
from ..formats import ManifestError, MediaType, Platform, parse_manifest
from ..metadata.store import ManifestRecord, MetadataStore
from ..metrics import recorder as metrics
from ..reference import DigestRef, ManifestReference, TagRef
from ..service.accepts import Accepts
from ..service.manifests import ManifestContent, Manifests, StaleManifest, insert_manifest, new_manifest
from .errors import upstream_failure
from .routing import ProxyName
from .upstream import Upstream, UpstreamError, UpstreamRefused

log: Final = logging.getLogger("cargohold.proxy")

#: how long a process waits for another's fetch of a manifest it has no copy of, before fetching itself
FOLLOW_SECONDS: Final = 30.0
#: between two looks at the store while another process fetches
POLL_SECONDS: Final = 0.05
#: how long a process serves a tag that another process checked (or is checking) before it looks again
ELSEWHERE_SECONDS: Final = 1.0
#: the lease outlives the upstream's timeout by this much (a check is a HEAD, then maybe a GET)
LEASE_MARGIN_SECONDS: Final = 10.0

_INDEXES: Final = frozenset({MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST_LIST})
#: tags whose last check a process remembers; past this, it forgets them all (and checks each again)
MAX_REMEMBERED: Final = 100_000

_T = TypeVar("_T")


class Flights(Generic[_T]):
    """Per-process single flight: callers with the same key share one task."""

    def __init__(self) -> None:
        self._running: dict[object, asyncio.Task[_T]] = {}

    async def run(self, key: object, work: Callable[[], Awaitable[_T]]) -> _T:
        task = self._running.get(key)
        if task is None:
            async def run() -> _T:
                try:
                    return await work()
                finally:
                    self._running.pop(key, None)

            task = self._running[key] = asyncio.get_running_loop().create_task(run())
        return await asyncio.shield(task)


class ProxyManifests:
    def __init__(self, meta: MetadataStore, manifests: Manifests, recorder: Recorder, holder: str) -> None:
        self.meta = meta
        self.manifests = manifests
        self.recorder = recorder
        #: names this process in the store's leases
        self.holder = holder
        self._fetches: Flights[None] = Flights()
        self._checks: Flights[tuple[float, str | None]] = Flights()
        #: (repository, tag) -> (until when it is served without asking, the warning to serve it with until then)
        self._checked: dict[tuple[str, str], tuple[float, str | None]] = {}

    async def get(
        self, repository: str, target: ProxyName, upstream: Upstream, reference: ManifestReference, accepts: Accepts,
    ) -> ManifestContent:
        if not self.manifests.guard.writable:
            return await self._uncached(repository, target, upstream, reference, accepts)
        if isinstance(reference, DigestRef):
            await self._cached(repository, target, upstream, reference.digest)
            return await self.manifests.get(repository, reference, accepts)
        key = (repository, reference.tag)
        checked = self._checked.get(key)
        if checked is not None and time.monotonic() < checked[0]:
            try:
                found = await self._served(repository, target, upstream, reference, accepts)
                return found if checked[1] is None else StaleManifest(found, checked[1])
            except (ManifestUnknown, NameUnknown):  # deleted here since (retention): ask the upstream
                self._checked.pop(key, None)
        checked = await self._checks.run(key, lambda: self._by_tag(repository, target, upstream, reference))
        found = await self._served(repository, target, upstream, reference, accepts)
        return found if checked[1] is None else StaleManifest(found, checked[1])

    async def _served(
        self, repository: str, target: ProxyName, upstream: Upstream, reference: TagRef, accepts: Accepts,
    ) -> ManifestContent:
        """The cached tag as the client takes it; the image a client that cannot read a Docker manifest list gets
        instead of it is fetched first if need be."""
        try:
            return await self.manifests.get(repository, reference, accepts)
        except ManifestUnknown as exc:
            child = exc.detail.get("reference") if isinstance(exc.detail, dict) else None
            if not isinstance(child, str) or ":" not in child:
                raise
        await self._cached(repository, target, upstream, Digest.parse(child))
        return await self.manifests.get(repository, reference, accepts)

    async def _cached(self, repository: str, target: ProxyName, upstream: Upstream, digest: Digest) -> None:
        cached = await self.meta.manifest(repository, str(digest)) is not None
        metrics.proxy_cache(hit=cached)
        if not cached:
            await self._fetches.run(
                (repository, str(digest)), lambda: self._by_digest(repository, target, upstream, digest))

    async def _uncached(
        self, repository: str, target: ProxyName, upstream: Upstream, reference: ManifestReference, accepts: Accepts,
    ) -> ManifestContent:
        """Read-only mode: the cached manifest, else the upstream's, not stored."""
        if isinstance(reference, TagRef):
            cached = await self.meta.tagged_manifest(repository, reference.tag)
        else:
            cached = await self.meta.manifest(repository, str(reference.digest))
        if cached is not None:
            return await self.manifests.get(repository, reference, accepts)
        if isinstance(reference, DigestRef):
            if target.proxy.platforms:
                await self._check_platform(repository, target, str(reference.digest))
            raw, media_type = await self._fetch(target, upstream, str(reference.digest), ManifestUnknown)
            return Fetched(str(reference.digest), media_type, raw)
        try:
            raw, media_type, digest = await upstream.get_manifest(target.upstream_name, reference.tag)
        except (UpstreamError, UpstreamRefused) as exc:
            raise upstream_failure(exc, target.proxy.prefix, ManifestUnknown, {"tag": reference.tag}) from None
        return Fetched(digest, media_type, raw)

    # by digest

    async def _by_digest(self, repository: str, target: ProxyName, upstream: Upstream, digest: Digest) -> None:
        if target.proxy.platforms:
            await self._check_platform(repository, target, str(digest))
        async with _Lease(self.meta, f"proxy:{repository}@{digest}", self.holder, _lease_seconds(target)) as lease:
            while not await lease.taken():
                if await self.meta.manifest(repository, str(digest)) is not None:
                    return  # the other process stored it
            if await self.meta.manifest(repository, str(digest)) is None:
                raw, media_type = await self._fetch(target, upstream, str(digest), ManifestUnknown)
                await self._store(repository, raw, media_type, digest, ())

    async def _check_platform(self, repository: str, target: ProxyName, digest: str) -> None:
        """MANIFEST_UNKNOWN for an image that the cached indexes list only for platforms the proxy does not serve
        (a manifest no cached index lists is fetched: its platform is not known before)."""
        found = await self.meta.repository_id(repository)
        if found is None:
            return
        if not await self.meta.is_listed(found, digest):
            return
        indexes = [m.digest for m in (await self.meta.retention_view(found)).manifests if m.media_type in _INDEXES]
        listed = []
        for index in indexes:
            record = await self.meta.manifest(repository, index)
            if record is None:
                continue
            for entry in parse_manifest(record.content, record.media_type).manifests:
                if str(entry.digest) == digest and entry.platform is not None:
                    listed.append(entry.platform)
        if listed and not any(_serves(target.proxy.platforms, platform) for platform in listed):
            raise ManifestUnknown(
                f"this cache serves only the platforms {', '.join(target.proxy.platforms)} of {target.proxy.prefix!r}",
                detail={"digest": digest})

    # by tag

    async def _by_tag(
        self, repository: str, target: ProxyName, upstream: Upstream, reference: TagRef,
    ) -> tuple[float, str | None]:
        tag = reference.tag
        revalidate = target.proxy.revalidate_seconds
        # held while checking, and kept for ``revalidate`` after a check the upstream answered: the
        # other processes see the tag as checked until it lapses
        cached = await self.meta.tagged_manifest(repository, tag)
        async with _Lease(self.meta, f"proxy:{repository}:{tag}", self.holder, _lease_seconds(target)) as lease:
            while not await lease.taken():
                if cached is None:
                    cached = await self.meta.tagged_manifest(repository, tag)
                if cached is not None:  # checked (or being checked) elsewhere: look again a little later
                    return self._remember(repository, tag, None, min(revalidate, ELSEWHERE_SECONDS))
            warning = await self._check(repository, target, upstream, tag, cached)
            if warning is None and revalidate > 0:
                await lease.keep(revalidate)
        return self._remember(repository, tag, warning, revalidate)

    def _remember(self, repository: str, tag: str, warning: str | None, fresh: float) -> tuple[float, str | None]:
        """Serve the tag without asking for ``fresh`` seconds more, with ``warning``."""
        checked = time.monotonic() + fresh, warning
        if len(self._checked) >= MAX_REMEMBERED:
            self._checked.clear()
        self._checked[(repository, tag)] = checked
        return checked

    async def _check(
        self, repository: str, target: ProxyName, upstream: Upstream, tag: str, cached: ManifestRecord | None,
    ) -> str | None:
        """Bring the tag up to date; the warning to serve the cached copy with if the upstream could not say."""
        name = target.upstream_name
        try:
            if cached is None:
                raw, media_type, digest = await upstream.get_manifest(name, tag)
                await self._store(repository, raw, media_type, Digest.parse(digest), (tag,))
                return None
            digest, _, _ = await upstream.head_manifest(name, tag)
        except UpstreamError as exc:
            return self._stale(repository, target, tag, cached, exc)
        except UpstreamRefused as exc:
            if exc.status == 404 or cached is None:
                raise upstream_failure(exc, target.proxy.prefix, ManifestUnknown, {"tag": tag}) from None
            return self._stale(repository, target, tag, cached, exc)
        if digest == cached.digest:
            return None
        known = await self.meta.manifest(repository, digest)
        if known is not None:
            await self._store(repository, known.content, known.media_type, Digest.parse(digest), (tag,))
            return None
        try:
            raw, media_type = await self._fetch(target, upstream, digest, ManifestUnknown)
        except RegistryError as exc:
            log.warning("serving a cached tag: its new manifest could not be fetched", extra={
                "proxy": target.proxy.prefix, "repository": repository, "tag": tag, "digest": digest,
                "error": exc.message})
            return f"serving the cached {tag}: the upstream's new manifest could not be fetched ({exc.message})"
        await self._store(repository, raw, media_type, Digest.parse(digest), (tag,))
        return None

    @staticmethod
    def _stale(
        repository: str, target: ProxyName, tag: str, cached: ManifestRecord | None,
        exc: UpstreamError | UpstreamRefused,
    ) -> str:
        if cached is None:
            raise upstream_failure(exc, target.proxy.prefix, ManifestUnknown, {"tag": tag}) from None
        log.warning("serving a cached tag: the upstream could not be asked", extra={
            "proxy": target.proxy.prefix, "repository": repository, "tag": tag, "digest": cached.digest,
            "error": str(exc)})
        return f"upstream unavailable ({exc}); serving the cached {tag}, which may be out of date"

    # upstream and store

    @staticmethod
    async def _fetch(
        target: ProxyName, upstream: Upstream, digest: str, unknown: type[RegistryError],
    ) -> tuple[bytes, str]:
        try:
            raw, media_type, found = await upstream.get_manifest(target.upstream_name, digest)
        except (UpstreamError, UpstreamRefused) as exc:
            raise upstream_failure(exc, target.proxy.prefix, unknown, {"digest": digest}) from None
        expected = Digest.parse(digest)
        if found != digest or Digest.of(raw, expected.algorithm) != expected:
            raise Unavailable(f"upstream of {target.proxy.prefix!r} sent a manifest that does not match {digest}")
        return raw, media_type

    async def _store(
        self, repository: str, raw: bytes, media_type: str, digest: Digest, tags: tuple[str, ...],
    ) -> None:
        """Store the manifest verbatim (creating the repository), pointing ``tags`` at it, with a push's events."""
        try:
            manifest = parse_manifest(raw, media_type)
        except ManifestError as exc:
            raise Unavailable(f"the upstream sent a manifest this registry cannot read: {exc}") from None
        record = new_manifest(manifest, raw, digest)
        async with self.meta.transaction() as tx:
            await insert_manifest(tx, self.recorder, repository, await tx.repository_id(repository), record, tags)


@dataclass(frozen=True, slots=True)
class Fetched:
    """A manifest as the upstream sent it (digest verified), served without being stored."""

    digest: str
    media_type: str
    content: bytes


def _serves(platforms: list[str], platform: Platform) -> bool:
    """Whether ``platform`` is one of ``platforms`` (``linux/arm64`` takes every variant, ``linux/arm64/v8`` one)."""
    for wanted in platforms:
        parts = wanted.split("/")
        if parts[:2] == [platform.os, platform.architecture] and (len(parts) == 2 or parts[2] == platform.variant):
            return True
    return False


def _lease_seconds(target: ProxyName) -> float:
    return 2 * target.proxy.timeout_seconds + LEASE_MARGIN_SECONDS


class _Lease:
    """A lease on one manifest across processes. :meth:`taken` is True once this process holds it, or once
    it has waited :data:`FOLLOW_SECONDS` (then it goes on without); else it sleeps a poll and is False."""

    def __init__(self, meta: MetadataStore, name: str, holder: str, seconds: float) -> None:
        self.meta, self.name, self.holder, self.seconds = meta, name, holder, seconds
        self._held = False
        self._deadline = time.monotonic() + FOLLOW_SECONDS

    async def __aenter__(self) -> _Lease:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._held:
            await self.meta.release_lease(self.name, self.holder)

    async def keep(self, seconds: float) -> None:
        """Hold the lease ``seconds`` more, and leave it to lapse then rather than release it."""
        await self.meta.acquire_lease(self.name, self.holder, seconds)
        self._held = False

    async def taken(self) -> bool:
        if self._held or time.monotonic() >= self._deadline:
            return True
        self._held = await self.meta.acquire_lease(self.name, self.holder, self.seconds)
        if not self._held:
            await asyncio.sleep(POLL_SECONDS)
        return self._held

