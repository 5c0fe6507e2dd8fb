"""Pull from a registry into an OCI image layout, through the blob cache; push back from one.

Pull order (nothing is named until its content is verified)::

    manifests (verified by digest) ─► blobs: registry ─► cache (verified, resumable) ─► layout (re-verified)
                                  ─► child manifests ─► root manifest ─► index.json tag (last)

Push order: blobs (skipped if present, mounted if the cache knows another
repository of the registry that has them, else uploaded) ─► child manifests
by digest ─► the root manifest by tag.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..digest import Digest
from ..formats import Descriptor, Platform, is_schema1, parse_manifest
from ..reference import Reference
from . import blob_uploads, blobs, referrers
from .blobs import TransferProgress
from .cache import BlobCache
from .errors import ClientError, RegistryResponseError, TLSError, TransportError, UnsupportedOperation
from .image import Node, blobs_of, choose_root, remote_graph, walk
from .layout import OCILayout
from .registry import RegistryClient


@dataclass(frozen=True, slots=True)
class TransferResult:
    """What a pull, push or copy did."""

    digest: Digest
    media_type: str
    manifests: int
    blobs_transferred: int
    blobs_skipped: int
    blobs_mounted: int = 0
    bytes_transferred: int = 0
    #: the referrers brought along (copy and sync with ``referrers``)
    referrers: tuple[Digest, ...] = ()


def pull(
    client: RegistryClient,
    ref: Reference,
    layout: OCILayout,
    *,
    tag: str | None = None,
    platform: Platform | None = None,
    all_platforms: bool = False,
    cache: BlobCache | None = None,
    progress: TransferProgress | None = None,
) -> TransferResult:
    """Pull ``ref`` into ``layout`` and name it ``tag`` in its index.json.

    For an index: the image for ``platform`` (default: this machine's), or the
    whole index with ``all_platforms``. A re-pull fetches only blobs missing from
    the cache; an interrupted blob download resumes where it stopped.
    """
    with (cache or BlobCache()).transfer() as used:
        return _pull(client, ref, layout, tag, platform, all_platforms, used, progress)


def _pull(
    client: RegistryClient,
    ref: Reference,
    layout: OCILayout,
    tag: str | None,
    platform: Platform | None,
    all_platforms: bool,
    cache: BlobCache,
    progress: TransferProgress | None,
) -> TransferResult:
    top = client.get_manifest(ref)
    if is_schema1(top.media_type):
        raise UnsupportedOperation(f"{ref}: schema 1 manifests cannot be stored in an OCI layout")
    root, nodes = remote_graph(client, ref, top, platform, all_platforms)
    needed = blobs_of(nodes)
    if progress is not None:
        progress.add_total(sum(max(d.size, 0) for d in needed))

    def one(descriptor: Descriptor) -> bool:
        was_cached = cache.has(descriptor.digest, descriptor.size)
        if layout.has_blob(descriptor.digest, descriptor.size):
            if progress is not None:
                progress.advance(max(descriptor.size, 0))
            return False
        path = cache.fetch(
            client,
            ref,
            descriptor.digest,
            descriptor.size,
            progress.advance if progress is not None else None,
        )
        if was_cached:  # verified on an earlier run: check it again on the way in
            layout.copy_blob_from(path, descriptor.digest, descriptor.size)
        else:  # verified just now, as it arrived
            layout.link_blob_from(path, descriptor.digest, descriptor.size)
        cache.remember(descriptor.digest, ref.registry, ref.repository)
        return not was_cached

    layout.create()
    with ThreadPoolExecutor(max_workers=client.workers) as pool:
        fetched = sum(pool.map(one, needed))
    for node in nodes:
        layout.write_blob_bytes(node.descriptor.digest, node.raw)
    layout.set_tag(tag, root.descriptor)
    return TransferResult(
        root.descriptor.digest, root.descriptor.media_type, len(nodes), fetched, len(needed) - fetched
    )


def push(
    client: RegistryClient,
    layout: OCILayout,
    tag: str | None,
    ref: Reference,
    *,
    platform: Platform | None = None,
    all_platforms: bool = False,
    cache: BlobCache | None = None,
    chunk_size: int = blob_uploads.DEFAULT_CHUNK_SIZE,
    progress: TransferProgress | None = None,
) -> TransferResult:
    """Push the layout's image (or index) named ``tag`` to ``ref``; returns the pushed digest.

    An index goes whole, unless ``platform`` picks one of its images: then that
    image's manifest alone is pushed (as ``ref``). A single image must be for ``platform``.
    """
    cache = cache or BlobCache()
    top = layout.resolve(tag)
    raw = layout.read_blob(top.digest)

    def fetch(descriptor: Descriptor) -> bytes:
        return layout.read_blob(descriptor.digest)

    root = Node(top, raw, parse_manifest(raw, top.media_type))
    what = f"{layout.path}:{tag}" if tag else str(layout.path)
    root = choose_root(root, fetch, fetch, what, platform, all_platforms, default_all=True)
    nodes = walk(root, fetch, lambda _: True)
    needed = blobs_of(nodes)
    if progress is not None:
        progress.add_total(sum(max(d.size, 0) for d in needed))
    counts = {"uploaded": 0, "skipped": 0, "mounted": 0}

    def one(descriptor: Descriptor) -> str:
        outcome = send_blob(
            client,
            ref,
            descriptor,
            cache,
            lambda: layout.iter_blob(descriptor.digest, descriptor.size),
            chunk_size=chunk_size,
            progress=progress,
        )
        cache.remember(descriptor.digest, ref.registry, ref.repository)
        return outcome

    for descriptor in needed:
        if not layout.has_blob(descriptor.digest, descriptor.size):
            raise ClientError(f"{layout.path}: blob {descriptor.digest} is missing from the layout")
    with ThreadPoolExecutor(max_workers=client.workers) as pool:
        for outcome in pool.map(one, needed):
            counts[outcome] += 1
    digest = put_nodes(client, ref, nodes)
    return TransferResult(
        digest,
        root.descriptor.media_type,
        len(nodes),
        counts["uploaded"],
        counts["skipped"],
        counts["mounted"],
    )


def send_blob(
    client: RegistryClient,
    ref: Reference,
    descriptor: Descriptor,
    cache: BlobCache | None,
    source: blobs.ChunkSource,
    *,
    mount_from: list[str] | None = None,
    chunk_size: int = blob_uploads.DEFAULT_CHUNK_SIZE,
    progress: TransferProgress | None = None,
) -> str:
    """Make ``descriptor``'s blob present in ``ref``'s repository: "skipped", "mounted" or "uploaded"."""
    size = descriptor.size
    if client.blob_size(ref, descriptor.digest) is not None:
        if progress is not None:
            progress.advance(max(size, 0))
        return "skipped"
    candidates = list(mount_from or [])
    if cache is not None:
        candidates += [
            r for r in reversed(cache.sources(descriptor.digest, ref.registry)) if r not in candidates
        ]
    for source_repo in candidates:
        if source_repo != ref.repository and client.mount_blob(ref, descriptor.digest, source_repo):
            if progress is not None:
                progress.advance(max(size, 0))
            return "mounted"
    upload_with_restarts(client, ref, descriptor, source, chunk_size=chunk_size, progress=progress)
    return "uploaded"


def _restartable(exc: ClientError) -> bool:
    """Transient failures, and an upload session the registry no longer knows (a resent final
    PUT after the first one landed answers BLOB_UPLOAD_UNKNOWN)."""
    if isinstance(exc, TLSError):
        return False
    if isinstance(exc, TransportError):
        return True
    return isinstance(exc, RegistryResponseError) and (exc.temporary or exc.code_name == "BLOB_UPLOAD_UNKNOWN")


def upload_with_restarts(
    client: RegistryClient,
    ref: Reference,
    descriptor: Descriptor,
    source: blobs.ChunkSource,
    *,
    chunk_size: int = blob_uploads.DEFAULT_CHUNK_SIZE,
    progress: TransferProgress | None = None,
) -> None:
    """Upload a blob; after a transient failure, start a new upload session from the first byte.

    A PATCH or POST is never resent on its own (the registry may have acted on
    it); instead the blob's presence is checked (the final PUT may have landed)
    and, if absent, the whole upload starts over from a fresh ``source()``.
    """
    attempts = client.options.retries + 1
    for attempt in range(attempts):
        moved = 0

        def advance(count: int) -> None:
            nonlocal moved
            moved += count
            if progress is not None:
                progress.advance(count)

        try:
            blob_uploads.upload(
                client, ref, descriptor.digest, descriptor.size, source(), chunk_size=chunk_size, progress=advance
            )
            return
        except ClientError as exc:
            if attempt == attempts - 1 or not _restartable(exc):
                raise
        time.sleep(client.options.backoff * (2**attempt))
        if client.blob_size(ref, descriptor.digest) is not None:
            if progress is not None:
                progress.advance(max(descriptor.size - moved, 0))
            return
        if progress is not None and moved:
            progress.add_total(moved)  # those bytes will be sent again


def put_nodes(client: RegistryClient, ref: Reference, nodes: list[Node]) -> Digest:
    """PUT manifests children first (by digest), the root last (by tag, or digest if no tag)."""
    *children, root = nodes
    for node in children:
        referrers.put_manifest(client, ref.with_digest(node.descriptor.digest), node.raw, node.manifest.media_type,
                               node.manifest)
    target = ref if ref.tag is not None else ref.with_digest(root.descriptor.digest)
    if ref.tag is not None and ref.digest is not None:
        target = Reference(ref.registry, ref.repository, ref.tag, None)
    return referrers.put_manifest(client, target, root.raw, root.manifest.media_type, root.manifest)
