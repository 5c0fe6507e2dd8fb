"""Copy images between registries (or repositories, or tags), and sync whole repositories.

Blobs are streamed: GET from the source, hashed as they pass, PATCHed to the
destination in bounded chunks, committed with ``PUT ?digest=`` only after the
hash matched; no layer is held whole in memory or on disk. A blob the
destination already has is skipped; one in another repository of the same
registry is mounted. Manifests go last, children before the index, and the
tag is written only after everything it points to is in place.

With ``referrers``, what refers to the copied manifests comes along (:func:`copy_referrers`): their
OCI referrers (by the referrers API or the tag schema), the referrers of those, and cosign's tags.

A schema 1 manifest names its repository and tag inside its signed payload;
copying it under another name or tag re-signs it (with a fresh key unless one is given),
or, with ``convert_schema2``, converts it to a Docker schema 2 image (:mod:`.convert`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from ..digest import Digest
from ..formats import Descriptor, Platform, is_schema1
from ..reference import Reference
from . import blob_uploads, blobs
from .blobs import TransferProgress
from .convert import copy_converted
from .errors import ClientError, RegistryResponseError
from .image import blobs_of, remote_graph
from .pull import TransferResult, put_nodes, send_blob
from .referrers import cosign_tags, fallback_tag
from .referrers import referrers as list_referrers
from .registry import RawManifest, RegistryClient

if TYPE_CHECKING:
    from ..formats.schema1 import PrivateKey

#: referrers of referrers are followed this many levels deep (a signature of an SBOM of an image is 2)
REFERRER_DEPTH: Final = 4
#: tags that carry what refers to a manifest: the tag schema's index, and cosign's tags
DIGEST_TAG: Final = re.compile(r"^sha256-[0-9a-f]{64}(\.sig|\.att|\.sbom)?$")


def resign_schema1(raw: bytes, name: str, tag: str | None, key: PrivateKey | None = None) -> bytes:
    """A schema 1 manifest renamed to ``name:tag`` and signed again (after verifying the old signatures)."""
    from ..formats.schema1 import generate_key, sign, verify_signatures  # cryptography: only for schema 1

    payload = verify_signatures(raw)
    document: dict[str, Any] = json.loads(payload)
    document["name"] = name
    if tag is not None:
        document["tag"] = tag
    return sign(document, key or generate_key())


def _copy_schema1(
    client: RegistryClient, src: Reference, dst: Reference, top: RawManifest, key: PrivateKey | None
) -> TransferResult:
    manifest = top.parse()
    raw = top.raw
    if dst.repository != manifest.name or (dst.tag is not None and dst.tag != manifest.tag):
        raw = resign_schema1(raw, dst.repository, dst.tag, key)
    needed = list(manifest.references)
    for descriptor in needed:
        size = client.blob_size(src, descriptor.digest)
        if size is None:
            raise ClientError(f"{src}: layer {descriptor.digest} is missing")
        sized = Descriptor(descriptor.media_type, descriptor.digest, size)
        _send(client, src, dst, sized, None)
    target = dst if dst.tag is not None else dst.with_digest(top.digest)
    digest = client.put_manifest(target, raw, top.media_type)
    return TransferResult(digest, top.media_type, 1, len(needed), 0)


def _send(
    client: RegistryClient,
    src: Reference,
    dst: Reference,
    descriptor: Descriptor,
    progress: TransferProgress | None,
    chunk_size: int = blob_uploads.DEFAULT_CHUNK_SIZE,
) -> str:
    def source() -> Iterator[bytes]:
        return blobs.stream(client, src, descriptor.digest, descriptor.size)

    mount_from = [src.repository] if src.registry == dst.registry and src.repository != dst.repository else []
    return send_blob(
        client, dst, descriptor, None, source, mount_from=mount_from, chunk_size=chunk_size, progress=progress
    )


def copy(
    client: RegistryClient,
    src: Reference,
    dst: Reference,
    *,
    platform: Platform | None = None,
    all_platforms: bool = False,
    signing_key: PrivateKey | None = None,
    convert_schema2: bool = False,
    chunk_size: int = blob_uploads.DEFAULT_CHUNK_SIZE,
    progress: TransferProgress | None = None,
    referrers: bool = False,
    source_tags: Collection[str] | None = None,
) -> TransferResult:
    """Copy ``src`` to ``dst`` (any registries): one platform's image of an index, or all of it.

    A schema 1 image is re-signed for its new name, or converted to Docker
    schema 2 with ``convert_schema2`` (other images are copied unchanged).
    With ``referrers``, what refers to each manifest copied comes too (:func:`copy_referrers`; the
    source's tags are listed for cosign's unless ``source_tags`` gives them).
    """
    top = client.get_manifest(src)
    if is_schema1(top.media_type):
        if convert_schema2:
            return copy_converted(client, src, dst, top, chunk_size=chunk_size, progress=progress)
        return _copy_schema1(client, src, dst, top, signing_key)
    root, nodes = remote_graph(client, src, top, platform, all_platforms)
    needed = blobs_of(nodes)
    if progress is not None:
        progress.add_total(sum(max(d.size, 0) for d in needed))
    with ThreadPoolExecutor(max_workers=client.workers) as pool:
        outcomes = list(pool.map(lambda d: _send(client, src, dst, d, progress, chunk_size), needed))
    digest = put_nodes(client, dst, nodes)
    result = TransferResult(
        digest,
        root.descriptor.media_type,
        len(nodes),
        outcomes.count("uploaded"),
        outcomes.count("skipped"),
        outcomes.count("mounted"),
        sum(max(d.size, 0) for d, o in zip(needed, outcomes, strict=True) if o == "uploaded"),
    )
    if not referrers:
        return result
    tags = _tags_of(client, src) if source_tags is None else source_tags
    brought = copy_referrers(client, src, dst, [n.descriptor.digest for n in reversed(nodes)], source_tags=tags)
    return replace(result, referrers=tuple(brought))


def _tags_of(client: RegistryClient, repository: Reference) -> list[str]:
    """The repository's tags, for cosign's; none if the registry will not list them."""
    try:
        return client.tags(repository)
    except RegistryResponseError:
        return []


def copy_referrers(
    client: RegistryClient,
    src: Reference,
    dst: Reference,
    subjects: Iterable[Digest],
    *,
    source_tags: Collection[str] = (),
    seen: set[Digest] | None = None,
    depth: int = REFERRER_DEPTH,
) -> list[Digest]:
    """Copy what refers to each of ``subjects`` from ``src``'s repository to ``dst``'s; returns the
    referrers copied (by digest, in the order copied).

    Each referrer is copied by digest, whole, and pushed through :func:`.referrers.put_manifest`, so
    a destination without the referrers API gets its tag schema index. Referrers of referrers follow,
    ``depth`` levels deep; ``seen`` (shared between calls, e.g. over the tags of one sync) stops cycles
    and repeats. Of ``source_tags``, cosign's tags of each subject are copied as they are, and the tag
    schema's index as well when the destination did not get one of its own (it has the referrers API).
    A referrer a stale index lists but the source no longer has is passed over.
    """
    seen = set() if seen is None else seen
    tags = set(source_tags)
    src, dst = Reference(src.registry, src.repository), Reference(dst.registry, dst.repository)  # by digest only
    brought: list[Digest] = []
    level = [s for s in subjects if s not in seen]
    for _ in range(depth):
        following: list[Digest] = []
        for subject in level:
            if subject in seen:
                continue
            seen.add(subject)
            for descriptor in list_referrers(client, src, subject).manifests:
                if descriptor.digest in seen or descriptor.digest in following:
                    continue
                try:
                    copy(client, src.with_digest(descriptor.digest), dst.with_digest(descriptor.digest),
                         all_platforms=True)
                except RegistryResponseError as exc:
                    if exc.status == 404:
                        continue
                    raise
                brought.append(descriptor.digest)
                following.append(descriptor.digest)
            _copy_digest_tags(client, src, dst, subject, tags)
        level = following
        if not level:
            break
    return brought


def _copy_digest_tags(client: RegistryClient, src: Reference, dst: Reference, subject: Digest,
                      tags: set[str]) -> None:
    for name in cosign_tags(subject, tags):
        copy(client, src.with_tag(name), dst.with_tag(name), all_platforms=True)
    index = fallback_tag(subject)
    if index in tags and not _has_tag(client, dst.with_tag(index)):
        try:
            copy(client, src.with_tag(index), dst.with_tag(index), all_platforms=True)
        except RegistryResponseError as exc:
            if exc.status != 404:  # an index listing a referrer deleted since (tools that never clean up)
                raise


def _has_tag(client: RegistryClient, ref: Reference) -> bool:
    try:
        client.head_manifest(ref)
    except RegistryResponseError as exc:
        if exc.status == 404:
            return False
        raise
    return True


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What :func:`sync` did per tag: the copy result, or the error that stopped that tag."""

    copied: dict[str, TransferResult]
    failed: dict[str, str]
    skipped: tuple[str, ...]


def sync(
    client: RegistryClient,
    src: Reference,
    dst: Reference,
    *,
    tag_pattern: str | None = None,
    all_platforms: bool = True,
    platform: Platform | None = None,
    skip_existing: bool = True,
    convert_schema2: bool = False,
    referrers: bool = False,
) -> SyncResult:
    """Copy every tag of ``src`` (those matching ``tag_pattern``) to ``dst``, like ``skopeo sync``.

    Tags go in sorted order. A tag whose destination already points at the same digest is skipped
    (``skip_existing``; never true of a schema 1 tag converted with
    ``convert_schema2``); a failing tag is reported and does not stop the others.
    With ``referrers``, each tag's referrers come along (those of a skipped tag too: they may be new),
    and the tags that only carry referrers (``sha256-<hex>``, cosign's) are not synced on their own.
    """
    pattern = re.compile(tag_pattern) if tag_pattern else None
    every = client.tags(src)
    tags = sorted(t for t in every if (pattern is None or pattern.fullmatch(t))
                  and not (referrers and DIGEST_TAG.match(t)))
    copied: dict[str, TransferResult] = {}
    failed: dict[str, str] = {}
    skipped: list[str] = []
    seen: set[Digest] = set()
    for tag in tags:
        source, target = src.with_tag(tag), dst.with_tag(tag)
        try:
            if skip_existing and all_platforms and _same(client, source, target):
                skipped.append(tag)
                if referrers:
                    _referrers_of_tag(client, source, dst, every, seen)
                continue
            copied[tag] = copy(
                client,
                source,
                target,
                platform=platform,
                all_platforms=all_platforms,
                convert_schema2=convert_schema2,
            )
            if referrers:
                found = _referrers_of_tag(client, source, dst, every, seen)
                copied[tag] = replace(copied[tag], referrers=tuple(found))
        except ClientError as exc:
            failed[tag] = str(exc)
    return SyncResult(copied, failed, tuple(skipped))


def _referrers_of_tag(client: RegistryClient, source: Reference, dst: Reference, tags: Collection[str],
                      seen: set[Digest]) -> list[Digest]:
    """:func:`copy_referrers` for what ``source``'s tag points to and, for an index, each manifest it lists."""
    top = client.get_manifest(source)
    manifest = top.parse()
    children = [child.digest for child in manifest.manifests] if manifest.is_index else []
    return copy_referrers(client, source, dst, [top.digest, *children], source_tags=tags, seen=seen)


def _same(client: RegistryClient, source: Reference, target: Reference) -> bool:
    try:
        there = client.head_manifest(target)
    except RegistryResponseError as exc:
        if exc.status == 404:
            return False
        raise
    return there.digest == client.head_manifest(source).digest
