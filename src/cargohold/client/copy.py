"""Copy images between registries (or repositories, or tags), and sync whole repositories.

Blobs are streamed: GET from the source, hashed as they pass, PATCHed to the
destination in bounded chunks, committed with ``PUT ?digest=`` only after the
hash matched; no layer is held whole in memory or on disk. A blob the
destination already has is skipped; one in another repository of the same
registry is mounted. Manifests go last, children before the index, and the
tag is written only after everything it points to is in place.

A schema 1 manifest names its repository and tag inside its signed payload;
copying it under another name or tag re-signs it (with a fresh key unless one is given),
or, with ``convert_schema2``, converts it to a Docker schema 2 image (:mod:`.convert`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..formats import Descriptor, Platform, is_schema1
from ..reference import Reference
from . import blob_uploads, blobs
from .blobs import TransferProgress
from .convert import copy_converted
from .errors import ClientError, RegistryResponseError
from .image import blobs_of, remote_graph
from .pull import TransferResult, put_nodes, send_blob
from .registry import RawManifest, RegistryClient

if TYPE_CHECKING:
    from ..formats.schema1 import PrivateKey


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
) -> TransferResult:
    """Copy ``src`` to ``dst`` (any registries): one platform's image of an index, or all of it.

    A schema 1 image is re-signed for its new name, or converted to Docker
    schema 2 with ``convert_schema2`` (other images are copied unchanged).
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
    return TransferResult(
        digest,
        root.descriptor.media_type,
        len(nodes),
        outcomes.count("uploaded"),
        outcomes.count("skipped"),
        outcomes.count("mounted"),
        sum(max(d.size, 0) for d, o in zip(needed, outcomes, strict=True) if o == "uploaded"),
    )


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
) -> SyncResult:
    """Copy every tag of ``src`` (those matching ``tag_pattern``) to ``dst``, like ``skopeo sync``.

    Tags go in sorted order. A tag whose destination already points at the same digest is skipped
    (``skip_existing``; never true of a schema 1 tag converted with
    ``convert_schema2``); a failing tag is reported and does not stop the others.
    """
    pattern = re.compile(tag_pattern) if tag_pattern else None
    tags = sorted(t for t in client.tags(src) if pattern is None or pattern.fullmatch(t))
    copied: dict[str, TransferResult] = {}
    failed: dict[str, str] = {}
    skipped: list[str] = []
    for tag in tags:
        source, target = src.with_tag(tag), dst.with_tag(tag)
        try:
            if skip_existing and all_platforms and _same(client, source, target):
                skipped.append(tag)
                continue
            copied[tag] = copy(
                client,
                source,
                target,
                platform=platform,
                all_platforms=all_platforms,
                convert_schema2=convert_schema2,
            )
        except ClientError as exc:
            failed[tag] = str(exc)
    return SyncResult(copied, failed, tuple(skipped))


def _same(client: RegistryClient, source: Reference, target: Reference) -> bool:
    try:
        there = client.head_manifest(target)
    except RegistryResponseError as exc:
        if exc.status == 404:
            return False
        raise
    return there.digest == client.head_manifest(source).digest
