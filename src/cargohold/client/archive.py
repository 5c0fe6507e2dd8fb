"""docker-archive tars (``docker save`` / ``docker load``, skopeo's ``docker-archive:``).

Layout of the tar, as docker writes it::

    manifest.json        [{"Config": "<hex>.json", "RepoTags": ["repo:tag"], "Layers": ["<hex>.tar", ...]}]
    <config-hex>.json    the image config
    <layer-hex>.tar      each layer blob, stored exactly as the registry serves it
    repositories         {"repo": {"tag": "<top layer hex>"}} (legacy, for old docker)

Several images may share one archive (``docker save a b``, :func:`save_many`):
one manifest.json entry per image, each layer stored once.

Layers keep their registry bytes (usually gzip), which ``docker load`` and
skopeo both accept, so a pull to an archive and a push back are byte-identical
for every blob. The manifest is rebuilt on push: Docker schema 2 when every
layer is gzip, OCI otherwise.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..digest import Digest
from ..formats import Descriptor, MediaType, Platform, parse_manifest
from ..reference import Reference
from .blobs import READ_SIZE, ChunkSource, TransferProgress
from .cache import BlobCache
from .errors import LayoutError, UnsupportedOperation
from .image import Node, check_platform, resolve_image
from .pull import TransferResult, put_nodes, send_blob
from .registry import RegistryClient

_GZIP_MAGIC = b"\x1f\x8b"


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def default_repo_tag(ref: Reference) -> str | None:
    """The RepoTag docker would record for ``ref``: ``registry/repository:tag`` (None for a digest)."""
    return f"{ref.registry}/{ref.repository}:{ref.tag}" if ref.tag else None


@dataclass
class _Saved:
    """One image entry of manifest.json (several tags of one image share it, as in ``docker save``)."""

    config_name: str
    config: bytes
    layers: list[Descriptor]
    repo_tags: list[str]


def save(
    client: RegistryClient,
    ref: Reference,
    path: Path,
    *,
    repo_tag: str | None = None,
    platform: Platform | None = None,
    cache: BlobCache | None = None,
    progress: TransferProgress | None = None,
) -> TransferResult:
    """Pull one image (the platform's, for an index) into a docker-archive tar at ``path``."""
    [result] = save_many(client, [(ref, repo_tag)], path, platform=platform, cache=cache, progress=progress)
    return result


def save_many(
    client: RegistryClient,
    images: Sequence[tuple[Reference, str | None]],
    path: Path,
    *,
    platform: Platform | None = None,
    cache: BlobCache | None = None,
    progress: TransferProgress | None = None,
) -> list[TransferResult]:
    """Pull several images into one docker-archive, as ``docker save IMAGE...`` writes it.

    ``images`` pairs each reference with the RepoTag to record (None: the
    reference itself, see :func:`default_repo_tag`). manifest.json gets one
    entry per distinct image, listing all its tags; a layer shared by images
    is stored once; ``repositories`` maps every name and tag to its image's
    top layer. Blobs pass through the cache (verified, resumable); the tar is
    written to a temporary name and renamed into place only when complete.
    """
    if not images:
        raise ValueError("no images to save")
    with (cache or BlobCache()).transfer() as used:
        return _save_many(client, images, path, platform, used, progress)


def _save_many(
    client: RegistryClient,
    images: Sequence[tuple[Reference, str | None]],
    path: Path,
    platform: Platform | None,
    cache: BlobCache,
    progress: TransferProgress | None,
) -> list[TransferResult]:
    entries: dict[Digest, _Saved] = {}
    results: list[TransferResult] = []
    layer_files: dict[Digest, Path] = {}
    for ref, repo_tag in images:
        resolved, raw, manifest, _ = resolve_image(client, ref, platform)
        if manifest.config is None:
            raise UnsupportedOperation(f"{ref}: {raw.media_type} images cannot be saved as a docker-archive")
        tag = repo_tag or default_repo_tag(ref)
        entry = entries.get(manifest.config.digest)
        if entry is None:
            config = client.read_blob(resolved, manifest.config.digest)
            entry = _Saved(f"{manifest.config.digest.hex}.json", config, list(manifest.layers), [])
            entries[manifest.config.digest] = entry
        if tag and tag not in entry.repo_tags:
            entry.repo_tags.append(tag)
        new = [d for d in manifest.layers if d.digest not in layer_files]
        if progress is not None:
            progress.add_total(sum(max(d.size, 0) for d in new))
        fetched = 0
        for layer in manifest.layers:
            if layer.digest in layer_files:
                continue
            fetched += 0 if cache.has(layer.digest, layer.size) else 1
            callback = progress.advance if progress is not None else None
            layer_files[layer.digest] = cache.fetch(client, resolved, layer.digest, layer.size, callback)
        results.append(TransferResult(raw.digest, raw.media_type, 1, fetched, len(manifest.layers) - fetched))
    _write_archive(path, list(entries.values()), layer_files)
    return results


def _write_archive(path: Path, entries: list[_Saved], layer_files: dict[Digest, Path]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    written: set[Digest] = set()
    repositories: dict[str, dict[str, str]] = {}
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for entry in entries:
                _add_bytes(tar, entry.config_name, entry.config)
                for layer in entry.layers:
                    if layer.digest in written:
                        continue
                    written.add(layer.digest)
                    with layer_files[layer.digest].open("rb") as handle:
                        info = tar.gettarinfo(fileobj=handle, arcname=f"{layer.digest.hex}.tar")
                        info.mode, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, "", ""
                        tar.addfile(info, handle)
                for tag in entry.repo_tags:
                    if entry.layers:
                        name, _, tag_name = tag.rpartition(":")
                        repositories.setdefault(name, {})[tag_name] = entry.layers[-1].digest.hex
            manifest = [
                {
                    "Config": entry.config_name,
                    "RepoTags": entry.repo_tags,
                    "Layers": [f"{layer.digest.hex}.tar" for layer in entry.layers],
                }
                for entry in entries
            ]
            _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
            if repositories:
                _add_bytes(tar, "repositories", json.dumps(repositories).encode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class ArchiveImage:
    """One image of a docker-archive: its member names and the manifest rebuilt for it."""

    config_name: str
    layer_names: tuple[str, ...]
    config: bytes
    layers: tuple[Descriptor, ...]
    manifest: bytes
    media_type: str
    repo_tags: tuple[str, ...]


def _member(tar: tarfile.TarFile, name: str, archive: Path) -> IO[bytes]:
    try:
        handle = tar.extractfile(name)
    except KeyError:
        handle = None
    if handle is None:
        raise LayoutError(f"{archive}: member {name!r} is missing")
    return handle


def _open_tar(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r")  # noqa: SIM115 -- the caller's "with" closes it
    except (OSError, tarfile.TarError) as exc:
        raise LayoutError(f"{path}: not a readable tar: {exc}") from None


def _hash_member(tar: tarfile.TarFile, name: str, archive: Path) -> tuple[Digest, int, bool]:
    handle = _member(tar, name, archive)
    hasher = hashlib.sha256()
    size = 0
    head = b""
    while block := handle.read(READ_SIZE):
        if not head:
            head = block[:2]
        hasher.update(block)
        size += len(block)
    return Digest("sha256", hasher.hexdigest()), size, head == _GZIP_MAGIC


def load(path: Path, name: str | None = None) -> ArchiveImage:
    """Read the image named ``name`` (a RepoTag; optional when there is one image) from an archive."""
    with _open_tar(path) as tar:
        try:
            entries: list[dict[str, Any]] = json.load(_member(tar, "manifest.json", path))
        except ValueError as exc:
            raise LayoutError(f"{path}: manifest.json is not JSON: {exc}") from None
        if name is None:
            if len(entries) != 1:
                raise LayoutError(f"{path}: {len(entries)} images in the archive; name one with :REF")
            entry = entries[0]
        else:
            found = [e for e in entries if name in (e.get("RepoTags") or [])]
            if not found:
                raise LayoutError(f"{path}: no image tagged {name!r}")
            entry = found[0]
        config = _member(tar, entry["Config"], path).read()
        layers = []
        all_gzip = True
        for layer_name in entry["Layers"]:
            digest, size, gzipped = _hash_member(tar, layer_name, path)
            all_gzip = all_gzip and gzipped
            layers.append((digest, size, gzipped))
    if all_gzip:
        media_type, config_type = MediaType.DOCKER_MANIFEST, MediaType.DOCKER_CONFIG
        layer_types = [MediaType.DOCKER_LAYER] * len(layers)
    else:
        media_type, config_type = MediaType.OCI_MANIFEST, MediaType.OCI_CONFIG
        layer_types = [MediaType.OCI_LAYER_GZIP if g else MediaType.OCI_LAYER for _, _, g in layers]
    descriptors = tuple(Descriptor(t, d, s) for (d, s, _), t in zip(layers, layer_types, strict=True))
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": config_type, "digest": str(Digest.of(config)), "size": len(config)},
        "layers": [d.to_json() for d in descriptors],
    }
    return ArchiveImage(
        entry["Config"],
        tuple(entry["Layers"]),
        config,
        descriptors,
        json.dumps(manifest, indent=3).encode(),
        media_type,
        tuple(entry.get("RepoTags") or []),
    )


def push_archive(
    client: RegistryClient,
    path: Path,
    name: str | None,
    ref: Reference,
    *,
    platform: Platform | None = None,
    cache: BlobCache | None = None,
    progress: TransferProgress | None = None,
) -> TransferResult:
    """Push an image from a docker-archive to ``ref``; layers stream from the tar, verified.

    An archive holds single images: with ``platform``, the image must be for it.
    """
    image = load(path, name)
    if platform is not None:
        check_platform(platform, image.config, f"docker-archive:{path}" + (f":{name}" if name else ""))

    def member(member_name: str) -> Iterator[bytes]:
        with _open_tar(path) as tar:
            handle = _member(tar, member_name, path)
            while block := handle.read(READ_SIZE):
                yield block

    def opener(member_name: str) -> ChunkSource:
        return lambda: member(member_name)

    if progress is not None:
        progress.add_total(sum(d.size for d in image.layers))
    config_digest = Digest.of(image.config)
    config = Descriptor(MediaType.DOCKER_CONFIG, config_digest, len(image.config))
    counts = {"uploaded": 0, "skipped": 0, "mounted": 0}
    counts[send_blob(client, ref, config, cache, lambda: [image.config])] += 1
    for descriptor, member_name in zip(image.layers, image.layer_names, strict=True):
        outcome = send_blob(client, ref, descriptor, cache, opener(member_name), progress=progress)
        counts[outcome] += 1
    parsed = parse_manifest(image.manifest, image.media_type)
    node = Node(parsed.descriptor(), image.manifest, parsed)
    digest = put_nodes(client, ref, [node])
    return TransferResult(
        digest, image.media_type, 1, counts["uploaded"], counts["skipped"], counts["mounted"]
    )
