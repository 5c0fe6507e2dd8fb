"""Build and change indexes from images already in a registry: no layer byte passes through the client.

``index_create`` writes an OCI index (or a Docker manifest list) over existing images, each entry's
platform read from the image's config; a source that is itself an index gives its entries.
``index_add`` and ``index_remove`` change one index and write it back under its tag.

An index may only name manifests of its own repository, so sources in another repository of the
same registry are brought in first: their blobs by cross-repository mount, their manifests by a PUT
of the same bytes (:func:`bring`). Sources on another registry are refused: bringing them would move
every layer through the client, which is what ``copy`` is for.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from .. import jsontext
from ..digest import Digest
from ..formats import Descriptor, MediaType, Platform, is_index, is_schema1, parse_manifest
from ..reference import Reference
from .errors import ClientError, PlatformNotFound, UnsupportedOperation
from .image import Node, blobs_of, platform_matches, walk
from .registry import RawManifest, RegistryClient

#: the output formats of :func:`index_create`
FORMATS: Final = {"oci": MediaType.OCI_INDEX, "docker": MediaType.DOCKER_MANIFEST_LIST}
#: buildkit's attestation manifests sit in an index under this platform, naming their image by annotation
ATTESTATION_PLATFORM: Final = Platform("unknown", "unknown")
_REFERENCE_DIGEST: Final = "vnd.docker.reference.digest"


@dataclass(frozen=True, slots=True)
class IndexResult:
    """What an index command wrote."""

    reference: Reference  # by tag, with the digest written
    media_type: str
    size: int
    manifests: tuple[Descriptor, ...]
    #: manifests brought in from other repositories, and the blobs mounted for them
    brought: int = 0
    mounted: int = 0
    #: entries that left the index (``index remove``, or replaced by ``index add``)
    removed: tuple[Descriptor, ...] = ()


@dataclass(frozen=True, slots=True)
class Entry:
    """An index entry to be, and the repository its manifest is in now."""

    descriptor: Descriptor
    source: Reference


def compact(document: Mapping[str, Any]) -> bytes:
    """JSON as Go's encoder writes it (no spaces): manifests and configs are written this way."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def platform_of_config(config: bytes, what: str) -> Platform:
    """The platform an image's config declares (os, architecture, variant, os.version, os.features)."""
    try:
        data = jsontext.loads(config)
    except ValueError as exc:
        raise ClientError(f"{what}: the image config is not JSON: {exc}") from None
    if not isinstance(data, dict) or not data.get("os") or not data.get("architecture"):
        raise ClientError(f"{what}: its config names no os and architecture: not an image for an index")
    features = data.get("os.features") or ()
    return Platform(
        architecture=str(data["architecture"]),
        os=str(data["os"]),
        variant=str(data["variant"]) if data.get("variant") else None,
        os_version=str(data["os.version"]) if data.get("os.version") else None,
        os_features=tuple(str(f) for f in features) if isinstance(features, list) else (),
    )


def image_entry(client: RegistryClient, ref: Reference, raw: RawManifest) -> Descriptor:
    """The index entry of the image manifest ``raw`` (at ``ref``), its platform read from its config."""
    manifest = raw.parse()
    if manifest.config is None:
        raise ClientError(f"{ref}: {raw.media_type} has no config")
    platform = platform_of_config(client.read_blob(ref, manifest.config.digest), str(ref))
    return Descriptor(raw.media_type, raw.digest, raw.size, platform=platform)


def source_entries(client: RegistryClient, ref: Reference) -> list[Entry]:
    """The entries ``ref`` gives an index: itself for an image, its entries for an index."""
    raw = client.get_manifest(ref)
    if is_schema1(raw.media_type):
        raise UnsupportedOperation(
            f"{ref}: a schema 1 manifest cannot be in an index; convert it first (copy --convert-schema2)"
        )
    here = ref.with_digest(raw.digest)
    manifest = raw.parse()
    if not manifest.is_index:
        return [Entry(image_entry(client, here, raw), here)]
    entries = []
    for child in manifest.manifests:
        if child.platform is None and not is_index(child.media_type):
            child_ref = ref.with_digest(child.digest)
            found = image_entry(client, child_ref, client.get_manifest(child_ref))
            child = dataclasses.replace(child, platform=found.platform)
        entries.append(Entry(child, here))
    return entries


def check_format(media_type: str, entries: Iterable[Entry], annotations: Mapping[str, str]) -> None:
    """A Docker manifest list holds Docker schema 2 manifests only, and has no annotations."""
    if media_type != MediaType.DOCKER_MANIFEST_LIST:
        return
    if annotations:
        raise UnsupportedOperation("a Docker manifest list has no annotations; use an OCI index (--format oci)")
    for entry in entries:
        if entry.descriptor.media_type != MediaType.DOCKER_MANIFEST:
            raise UnsupportedOperation(
                f"{entry.source}: {entry.descriptor.digest} is {entry.descriptor.media_type}; a Docker manifest "
                "list holds Docker schema 2 manifests only (use --format oci, or an OCI index)"
            )


def _mount_one(client: RegistryClient, target: Reference, source: Reference, descriptor: Descriptor) -> None:
    if not client.mount_blob(target, descriptor.digest, source.repository):
        raise UnsupportedOperation(
            f"{target.registry} declined to mount blob {descriptor.digest} from {source.repository} into "
            f"{target.repository}; copy {source} there first (cargohold copy)"
        )


def same_registry(source: Reference, target: Reference) -> None:
    if source.registry != target.registry:
        raise UnsupportedOperation(
            f"{source} is on another registry than {target.registry}; bringing it would move its layers "
            f"through this client: copy it to {target.registry} first (cargohold copy)"
        )


def mount_blobs(
    client: RegistryClient, source: Reference, target: Reference, descriptors: Sequence[Descriptor]
) -> int:
    """Mount each blob from ``source``'s repository into ``target``'s (same registry); how many."""
    same_registry(source, target)
    if source.repository == target.repository or not descriptors:
        return 0
    with ThreadPoolExecutor(max_workers=client.workers) as pool:
        list(pool.map(lambda d: _mount_one(client, target, source, d), descriptors))
    return len(descriptors)


def bring(client: RegistryClient, source: Reference, target: Reference, digests: Sequence[Digest]) -> tuple[int, int]:
    """Make the manifests ``digests`` of ``source``'s repository, and everything under them, present in
    ``target``'s: blobs mounted, manifests PUT by digest (same bytes). Returns (manifests, blobs)."""
    same_registry(source, target)
    if source.repository == target.repository or not digests:
        return 0, 0

    def fetch(descriptor: Descriptor) -> bytes:
        return client.get_manifest(source.with_digest(descriptor.digest)).raw

    nodes: list[Node] = []
    seen: set[Digest] = set()
    for digest in digests:
        raw = client.get_manifest(source.with_digest(digest))
        root = Node(Descriptor(raw.media_type, raw.digest, raw.size), raw.raw, raw.parse())
        for node in walk(root, fetch, lambda _: True):
            if node.descriptor.digest not in seen:
                seen.add(node.descriptor.digest)
                nodes.append(node)
    mounted = mount_blobs(client, source, target, blobs_of(nodes))
    for node in nodes:  # children first: an index is accepted only once its entries are there
        client.put_manifest(target.with_digest(node.descriptor.digest), node.raw, node.manifest.media_type)
    return len(nodes), mounted


def tagged(ref: Reference, what: str) -> Reference:
    """``ref`` by its tag alone: where an index is written back."""
    if ref.tag is None:
        raise ValueError(f"{ref}: {what} needs a tag to write to (REGISTRY/REPO:TAG)")
    return Reference(ref.registry, ref.repository, ref.tag, None)


def _bring_entries(client: RegistryClient, target: Reference, entries: Sequence[Entry]) -> tuple[int, int]:
    by_source: dict[Reference, list[Digest]] = {}
    for entry in entries:
        same_registry(entry.source, target)
        key = Reference(entry.source.registry, entry.source.repository)
        by_source.setdefault(key, []).append(entry.descriptor.digest)
    manifests = blobs = 0
    for source, digests in by_source.items():
        found = bring(client, source, target, digests)
        manifests, blobs = manifests + found[0], blobs + found[1]
    return manifests, blobs


def _write(
    client: RegistryClient, target: Reference, document: dict[str, Any], media_type: str
) -> tuple[Reference, int]:
    raw = compact(document)
    parse_manifest(raw, media_type)  # never write what our own parser would refuse
    digest = client.put_manifest(target, raw, media_type)
    return target.with_digest(digest), len(raw)


def _same_platform(a: Platform | None, b: Platform | None) -> bool:
    return a is not None and b is not None and a != ATTESTATION_PLATFORM and a == b


def index_create(
    client: RegistryClient,
    target: Reference,
    sources: Sequence[Reference],
    *,
    annotations: Mapping[str, str] | None = None,
    format: str = "oci",
) -> IndexResult:
    """Write an index over ``sources`` (images, or indexes whose entries are taken) to ``target``'s tag.

    ``format`` is ``oci`` (an OCI index) or ``docker`` (a Docker manifest list, of Docker schema 2
    manifests only). The same manifest given twice is listed once; two images for one platform are refused.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown index format {format!r}: expected {' or '.join(FORMATS)}")
    if not sources:
        raise ValueError("an index needs at least one source image")
    target = tagged(target, "index create")
    media_type = FORMATS[format]
    for source in sources:
        same_registry(source, target)
    entries: list[Entry] = []
    for source in sources:
        for entry in source_entries(client, source):
            if any(e.descriptor.digest == entry.descriptor.digest for e in entries):
                continue
            clash = next((e for e in entries if _same_platform(e.descriptor.platform, entry.descriptor.platform)), None)
            if clash is not None:
                raise ValueError(
                    f"two images for {entry.descriptor.platform}: {clash.descriptor.digest} ({clash.source}) and "
                    f"{entry.descriptor.digest} ({entry.source}); an index has one image per platform"
                )
            entries.append(entry)
    check_format(media_type, entries, annotations or {})
    brought, mounted = _bring_entries(client, target, entries)
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [e.descriptor.to_json() for e in entries],
    }
    if annotations:
        document["annotations"] = dict(annotations)
    written, size = _write(client, target, document, media_type)
    return IndexResult(written, media_type, size, tuple(e.descriptor for e in entries), brought, mounted)


def _load_index(client: RegistryClient, ref: Reference) -> tuple[RawManifest, dict[str, Any]]:
    raw = client.get_manifest(ref)
    if not is_index(raw.media_type):
        raise ClientError(f"{ref} is an image ({raw.media_type}), not an index; use index create")
    raw.parse()
    document: dict[str, Any] = jsontext.loads(raw.raw)
    return raw, document


def _entries_of(document: dict[str, Any]) -> list[tuple[dict[str, Any], Descriptor]]:
    """Each entry as JSON (kept as it was, unknown fields included) with its typed view."""
    return [
        (item, Descriptor.from_json(item, f"manifests[{i}]")) for i, item in enumerate(document.get("manifests") or [])
    ]


def index_add(client: RegistryClient, index: Reference, sources: Sequence[Reference]) -> IndexResult:
    """Add ``sources`` (images, or the entries of indexes) to the index at ``index`` and write it back.

    An image already listed is skipped; an image for a platform already listed replaces that entry
    (its attestations, which name it, go with it). The index keeps its format.
    """
    target = tagged(index, "index add")
    if not sources:
        raise ValueError("index add needs at least one source image")
    for source in sources:
        same_registry(source, target)
    raw, document = _load_index(client, target)
    kept = _entries_of(document)
    added: list[Entry] = []
    for source in sources:
        for entry in source_entries(client, source):
            digest = entry.descriptor.digest
            if any(d.digest == digest for _, d in kept) or any(e.descriptor.digest == digest for e in added):
                continue
            added = [e for e in added if not _same_platform(e.descriptor.platform, entry.descriptor.platform)]
            added.append(entry)
    check_format(raw.media_type, added, {})
    replaced = {
        d.digest for _, d in kept if any(_same_platform(d.platform, e.descriptor.platform) for e in added)
    }
    removed = [d for _, d in kept if d.digest in replaced or _attests(d, replaced)]
    kept = [(item, d) for item, d in kept if d not in removed]
    brought, mounted = _bring_entries(client, target, added)
    document["manifests"] = [item for item, _ in kept] + [e.descriptor.to_json() for e in added]
    written, size = _write(client, target, document, raw.media_type)
    manifests = tuple(d for _, d in kept) + tuple(e.descriptor for e in added)
    return IndexResult(written, raw.media_type, size, manifests, brought, mounted, tuple(removed))


def _attests(descriptor: Descriptor, digests: set[Digest]) -> bool:
    """An attestation manifest (buildkit's) of one of ``digests``."""
    named = (descriptor.annotations or {}).get(_REFERENCE_DIGEST)
    return named is not None and any(named == str(d) for d in digests)


def index_remove(
    client: RegistryClient,
    index: Reference,
    *,
    digests: Sequence[Digest] = (),
    platforms: Sequence[Platform] = (),
) -> IndexResult:
    """Remove entries by digest or platform from the index at ``index`` and write it back under its tag.

    Each digest and platform must match an entry; an entry's attestations (buildkit's, which name it)
    go with it. A platform without a variant matches every variant.
    """
    target = tagged(index, "index remove")
    if not digests and not platforms:
        raise ValueError("index remove needs a digest or --platform of an entry to remove")
    raw, document = _load_index(client, target)
    entries = _entries_of(document)
    gone: set[Digest] = set()
    for digest in digests:
        if not any(d.digest == digest for _, d in entries):
            raise ClientError(f"{target}: no entry {digest} in the index")
        gone.add(digest)
    for platform in platforms:
        matching = {d.digest for _, d in entries if d.platform is not None and platform_matches(platform, d.platform)}
        if not matching:
            have = ", ".join(str(d.platform) for _, d in entries if d.platform is not None) or "none"
            raise PlatformNotFound(f"{target}: no entry for platform {platform} in the index (has: {have})")
        gone |= matching
    removed = tuple(d for _, d in entries if d.digest in gone or _attests(d, gone))
    kept = [(item, d) for item, d in entries if d not in removed]
    document["manifests"] = [item for item, _ in kept]
    written, size = _write(client, target, document, raw.media_type)
    return IndexResult(written, raw.media_type, size, tuple(d for _, d in kept), removed=removed)
