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
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from ..digest import Digest
from ..formats import Descriptor, MediaType, Platform, parse_manifest
from ..reference import Reference
from .blobs import READ_SIZE, ChunkSource, TransferProgress
from .cache import BlobCache
from .errors import DigestMismatch, LayoutError, UnsupportedOperation
from .image import Node, check_platform, resolve_image
from .pull import TransferResult, put_nodes, send_blob
from .registry import RegistryClient

_GZIP_MAGIC = b"\x1f\x8b"

#: a member named by its content's sha256, as every writer but the oldest docker names them:
#: ``<hex>.tar`` (docker, skopeo), ``<hex>.json`` (configs), ``<hex>.tar.gz`` and ``sha256:<hex>`` (crane),
#: ``blobs/sha256/<hex>`` (docker 25's OCI-layout archives); legacy ``<id>/layer.tar`` names nothing
_CONTENT_NAME: Final = re.compile(r"(?:sha256:)?([0-9a-f]{64})(?:\.tar|\.tar\.gz|\.json)?")

#: a layer's bytes for the tar being written: (size, chunks); the chunks may verify themselves as they end
LayerSource = Callable[[Descriptor], tuple[int, Iterable[bytes]]]


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def default_repo_tag(ref: Reference) -> str | None:
    """The RepoTag docker would record for ``ref``: ``registry/repository:tag`` (None for a digest)."""
    return f"{ref.registry}/{ref.repository}:{ref.tag}" if ref.tag else None


@dataclass
class SavedImage:
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
    check_destination(path)
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
    entries: dict[Digest, SavedImage] = {}
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
            entry = SavedImage(f"{manifest.config.digest.hex}.json", config, list(manifest.layers), [])
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

    def cached(layer: Descriptor) -> tuple[int, Iterable[bytes]]:
        return layer_files[layer.digest].stat().st_size, _file_chunks(layer_files[layer.digest])

    write_archive(path, list(entries.values()), cached)
    return results


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while block := handle.read(READ_SIZE):
            yield block


class _ChunkReader:
    """A file-like ``read(n)`` over chunks, for :meth:`tarfile.TarFile.addfile` (no whole layer in memory)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._chunk = b""
        self._at = 0

    def read(self, size: int) -> bytes:
        parts = []
        while size > 0:
            if self._at >= len(self._chunk):
                following = next(self._chunks, None)
                if following is None:
                    break
                self._chunk, self._at = following, 0
                continue
            piece = self._chunk[self._at : self._at + size]
            self._at += len(piece)
            size -= len(piece)
            parts.append(piece)
        return b"".join(parts)

    def finish(self, what: str) -> None:
        """Run the chunks to their end (where a verifying source checks its digest)."""
        if self._at < len(self._chunk) or any(self._chunks):
            raise LayoutError(f"{what}: longer than its size")


def check_destination(path: Path) -> None:
    """Refuse a path no archive can be written to, before anything is fetched for it."""
    if path.is_dir():
        raise LayoutError(f"{path}: is a directory; a docker-archive is a file")
    if not path.parent.is_dir():
        raise LayoutError(f"{path.parent}: no such directory")


def write_archive(path: Path, entries: list[SavedImage], open_layer: LayerSource) -> None:
    """Write a docker-archive at ``path``: under a temporary name, renamed into place only when complete.

    ``open_layer`` streams each distinct layer once; if it raises (a digest
    mismatch), nothing is left at ``path`` or beside it.
    """
    check_destination(path)
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
                    size, chunks = open_layer(layer)
                    info = tarfile.TarInfo(f"{layer.digest.hex}.tar")
                    info.size, info.mode = size, 0o644
                    reader = _ChunkReader(chunks)
                    tar.addfile(info, reader)  # type: ignore[arg-type]  # read(n) is all it calls
                    reader.finish(f"layer {layer.digest}")
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


def open_tar(path: Path) -> tarfile.TarFile:
    """The archive as a tar (:class:`LayoutError` if it is not one)."""
    try:
        return tarfile.open(path, "r")  # noqa: SIM115 -- the caller's "with" closes it
    except tarfile.ReadError:  # its message lists every compression tried, one per line
        raise LayoutError(f"{path}: not a readable tar (plain, gzip, bzip2 or xz)") from None
    except (OSError, tarfile.TarError) as exc:
        raise LayoutError(f"{path}: not a readable tar: {exc}") from None


def _named_digest(name: str) -> Digest | None:
    """The digest a member's name promises for its content (see :data:`_CONTENT_NAME`), if any."""
    parent, _, base = name.rpartition("/")
    if parent.endswith("blobs/sha256") and re.fullmatch("[0-9a-f]{64}", base):
        return Digest("sha256", base)
    matched = _CONTENT_NAME.fullmatch(base)
    return Digest("sha256", matched.group(1)) if matched else None


def _check_named(name: str, got: Digest, archive: Path) -> None:
    expected = _named_digest(name)
    if expected is not None and expected != got:
        raise DigestMismatch(f"{archive}: member {name}", expected, got)


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
    digest = Digest("sha256", hasher.hexdigest())
    _check_named(name, digest, archive)
    return digest, size, head == _GZIP_MAGIC


def _entries(tar: tarfile.TarFile, path: Path) -> list[dict[str, Any]]:
    """manifest.json's entries, each with a ``Config`` name and a list of ``Layers`` names."""
    try:
        entries = json.load(_member(tar, "manifest.json", path))
    except ValueError as exc:
        raise LayoutError(f"{path}: manifest.json is not JSON: {exc}") from None
    if not isinstance(entries, list) or not all(
        isinstance(e, dict)
        and isinstance(e.get("Config"), str)
        and isinstance(e.get("Layers"), list)
        and all(isinstance(n, str) for n in e["Layers"])
        and isinstance(e.get("RepoTags") or [], list)
        for e in entries
    ):
        raise LayoutError(f"{path}: manifest.json is not a docker-archive manifest (a list of Config and Layers)")
    return entries


def member_chunks(tar: tarfile.TarFile, name: str, archive: Path) -> Iterator[bytes]:
    """A member's bytes in chunks (as they are: the reader verifies them against what :func:`load` hashed)."""
    handle = _member(tar, name, archive)
    while block := handle.read(READ_SIZE):
        yield block


def load(path: Path, name: str | None = None, *, oci: bool = False) -> ArchiveImage:
    """Read the image named ``name`` (a RepoTag; optional when there is one image) from an archive.

    The manifest built for it is Docker schema 2 when every layer is gzip, OCI
    otherwise, or always OCI with ``oci`` (for an OCI layout, whose readers take
    no other kind). Members named by a digest (``<hex>.tar``, ``<hex>.json``...)
    must hash to it.
    """
    with open_tar(path) as tar:
        entries = _entries(tar, path)
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
        _check_named(entry["Config"], Digest.of(config), path)
        layers = []
        all_gzip = True
        for layer_name in entry["Layers"]:
            digest, size, gzipped = _hash_member(tar, layer_name, path)
            all_gzip = all_gzip and gzipped
            layers.append((digest, size, gzipped))
    if all_gzip and not oci:
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
        with open_tar(path) as tar:
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
