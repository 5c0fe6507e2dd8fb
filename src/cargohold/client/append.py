"""``append``: new layers on top of an image, as ``crane append`` adds them.

Each file is a tar, plain or already compressed (gzip, zstd). A plain tar is
compressed as asked (gzip by default, as crane does); a compressed one is kept
byte for byte. The config gets each layer's diff ID (sha256 of its tar) in
``rootfs.diff_ids`` and a ``history`` entry; the manifest keeps its kind (OCI
stays OCI, Docker schema 2 stays Docker schema 2, which has no zstd layer type:
zstd into it is refused rather than turning the image into another kind). Every
file is checked before anything is pushed; the image's own layers are neither
downloaded nor uploaded (mounted, when the result goes to another repository of
the same registry; another registry is refused, as ``mutate`` refuses it).

The edit helpers here (:func:`load_image`, :func:`push_edited`) serve
:mod:`.flatten` too.
"""

from __future__ import annotations

import datetime
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import jsontext
from ..digest import Digest
from ..formats import Descriptor, MediaType, is_index, is_schema1
from ..reference import Reference
from .errors import ClientError, UnsupportedOperation
from .index_edit import compact, mount_blobs, same_registry
from .layers import Compression, WrittenLayer, check_tar, compress_file, file_chunks, file_digest, media_type
from .mutate import put_tagged
from .pull import send_blob
from .registry import RegistryClient


@dataclass(frozen=True, slots=True)
class SourceImage:
    """An image to edit: its reference by digest, manifest and config as JSON objects."""

    ref: Reference
    media_type: str
    manifest: dict[str, Any]
    config: dict[str, Any]

    @property
    def docker(self) -> bool:
        return self.media_type == MediaType.DOCKER_MANIFEST

    @property
    def layers(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.manifest.get("layers") or []
        return found


@dataclass(frozen=True, slots=True)
class AddedLayer:
    """A layer an edit pushed: its descriptor, diff ID, and where it came from."""

    descriptor: Descriptor
    diff_id: Digest
    source: str


@dataclass(frozen=True, slots=True)
class EditResult:
    """An edited image as pushed: where, its digest and media type, the layers it added."""

    source: Reference
    destination: Reference
    digest: Digest
    media_type: str
    layers: int
    added: tuple[AddedLayer, ...]
    blobs_uploaded: int
    blobs_skipped: int
    blobs_mounted: int


def load_image(client: RegistryClient, ref: Reference, verb: str) -> SourceImage:
    """``ref``'s image manifest and config; an index or a schema 1 image is refused with what to do."""
    raw = client.get_manifest(ref)
    where = f"{ref.registry}/{ref.repository}"
    if is_index(raw.media_type):
        count = len(raw.parse().manifests)
        raise UnsupportedOperation(
            f"{ref} is an index of {count} images; {verb} needs one image: name it as {where}@DIGEST"
        )
    if is_schema1(raw.media_type):
        raise UnsupportedOperation(f"{ref} is a schema 1 image; copy it with --convert-schema2 first")
    manifest = jsontext.loads(raw.raw)
    config_descriptor = raw.parse().config
    if not isinstance(manifest, dict) or config_descriptor is None:
        raise ClientError(f"{ref}: the manifest has no config")
    try:
        config = jsontext.loads(client.read_blob(ref, config_descriptor.digest))
    except ValueError as exc:
        raise ClientError(f"{ref}: the image config is not JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ClientError(f"{ref}: the image config is not a JSON object")
    return SourceImage(ref.with_digest(raw.digest), raw.media_type, manifest, config)


def now() -> str:
    """The time for a history entry, as docker writes it (RFC 3339, UTC)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def destination(ref: Reference, tag: Reference | None) -> Reference:
    """Where an edit goes: ``tag`` if given, else ``ref``'s own tag (overwritten, as crane does) or,
    for a reference by digest only, the repository by the new digest. The registry must be ``ref``'s:
    its layers are mounted, never moved through this client."""
    if tag is None:
        return Reference(ref.registry, ref.repository, ref.tag, None)
    if tag.digest is not None:
        raise ValueError(f"--tag {tag}: a new reference is written by tag, not by digest")
    same_registry(ref, tag)
    return tag


def push_edited(
    client: RegistryClient,
    image: SourceImage,
    dst: Reference,
    config: dict[str, Any],
    kept: Sequence[dict[str, Any]],
    added: Sequence[tuple[AddedLayer, Path]],
) -> EditResult:
    """Push ``image`` edited: layers ``kept`` (its own descriptors) then ``added`` (files), ``config``.

    Kept layers are not touched in the source's repository, mounted into another one of the same
    registry (as ``mutate`` does).
    """
    mounted = mount_blobs(client, image.ref, dst, [Descriptor.from_json(entry, "layer") for entry in kept])
    outcomes: list[str] = []
    for layer, path in added:

        def read(p: Path = path) -> Iterable[bytes]:
            return file_chunks(p)

        outcomes.append(send_blob(client, dst, layer.descriptor, None, read))
    config_raw = compact(config)
    config_descriptor = Descriptor(image.manifest["config"]["mediaType"], Digest.of(config_raw), len(config_raw))
    outcomes.append(send_blob(client, dst, config_descriptor, None, lambda: [config_raw]))
    manifest = dict(image.manifest)
    manifest["config"] = {**image.manifest["config"], "digest": str(config_descriptor.digest), "size": len(config_raw)}
    manifest["layers"] = [*kept, *(layer.descriptor.to_json() for layer, _ in added)]
    where = put_tagged(client, dst, compact(manifest), image.media_type)
    assert where.digest is not None
    return EditResult(
        image.ref,
        where,
        where.digest,
        image.media_type,
        len(manifest["layers"]),
        tuple(layer for layer, _ in added),
        outcomes.count("uploaded"),
        outcomes.count("skipped"),
        mounted,
    )


def _prepare(path: Path, compression: Compression, docker: bool, work: Path, index: int) -> tuple[AddedLayer, Path]:
    """A layer file checked (a tar), compressed if plain and asked to, described for the manifest."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a file")
    found, diff_id = check_tar(path)
    final = compression if found == "none" else found
    layer_type = media_type(final, docker)  # before compressing: zstd into a Docker image is refused
    blob = path
    if final != found:
        written: WrittenLayer = compress_file(path, work / f"layer-{index}", final)
        blob, digest, size = written.path, written.digest, written.size
    else:
        digest, size = file_digest(path)
    return AddedLayer(Descriptor(layer_type, digest, size), diff_id, str(path)), blob


def append(
    client: RegistryClient,
    ref: Reference,
    files: Sequence[Path],
    *,
    tag: Reference | None = None,
    compression: Compression = "gzip",
    created_by: str = "cargohold append",
) -> EditResult:
    """Add ``files`` (tars, plain or compressed) as layers on top of ``ref``'s image and push it to
    ``tag`` (default: ``ref``'s own tag)."""
    if not files:
        raise ValueError("append needs at least one layer file")
    dst = destination(ref, tag)
    image = load_image(client, ref, "append")
    with tempfile.TemporaryDirectory(prefix="cargohold-append-") as work:
        added = [_prepare(path, compression, image.docker, Path(work), i) for i, path in enumerate(files)]
        config = dict(image.config)
        rootfs = dict(config.get("rootfs") or {"type": "layers"})
        rootfs["diff_ids"] = [*(rootfs.get("diff_ids") or []), *(str(layer.diff_id) for layer, _ in added)]
        config["rootfs"] = rootfs
        history = list(config.get("history") or [])
        stamp = now()
        history += [{"created": stamp, "created_by": f"{created_by} {Path(layer.source).name}"} for layer, _ in added]
        config["history"] = history
        return push_edited(client, image, dst, config, image.layers, added)
