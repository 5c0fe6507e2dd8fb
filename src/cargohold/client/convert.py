"""Schema 1 to Docker schema 2, on copy: ``copy(..., convert_schema2=True)``, ``copy --convert-schema2``.

A schema 1 manifest carries no config blob and no diff IDs; both are rebuilt
here, the way docker's schema 1 pull does (moby ``image/v1``:
``MakeConfigFromV1Config``, ``HistoryFromConfig``; containerd's
``remotes/docker/schema1`` converter), which inverts Distribution's
schema 2 to schema 1 conversion (``manifest/schema1/config_builder.go``)::

    schema 1 (top layer first)                  Docker schema 2 (base layer first)
    fsLayers[i].blobSum ──────────────────────► layers[]            throwaway entries left out
    history[i].v1Compatibility ───────────────► config.history[]    created, author, comment,
        created, author, comment,                                   created_by = Cmd joined by " ",
        container_config.Cmd, throwaway                             empty_layer = throwaway
    history[0].v1Compatibility ───────────────► config              minus id, parent, Size,
                                                                    parent_id, layer_id, throwaway
    sha256(gunzip(blob)) ─────────────────────► config.rootfs.diff_ids[]

Layers stream from the source to the destination once; the diff ID is
computed from the same bytes as they pass (a layer the destination already
has is read once more, for its diff ID only). Consecutive history entries with
the same v1 ``id`` describe one layer listed twice (old docker pushes) and are
collapsed, as moby's ``fixManifestLayers`` does. The config and manifest are
serialized deterministically, so converting the same image twice gives the
same digest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from .. import jsontext
from ..digest import Digest
from ..formats import Descriptor, MediaType
from ..reference import Reference
from . import blob_uploads, blobs
from .blobs import TransferProgress
from .errors import ClientError, UnsupportedOperation
from .layers import DOCKER_LAYER_UNCOMPRESSED, HEAD_SIZE, GzipInflater, detect
from .pull import TransferResult, send_blob
from .registry import RawManifest, RegistryClient

#: v1 fields that describe the layer chain, not the image; moby drops them from the config
V1_ONLY_FIELDS: Final = frozenset({"id", "parent", "Size", "parent_id", "layer_id", "throwaway"})


class DiffIDHasher:
    """sha256 of a layer's uncompressed tar, fed the compressed blob in chunks.

    gzip (including multi-member streams) is inflated in bounded steps
    (:class:`.layers.GzipInflater`); a blob that is not compressed is its own diff ID.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._head = b""
        self._inflater: GzipInflater | None = None
        self.gzip: bool | None = None
        self.complete = False

    def update(self, data: bytes) -> None:
        if self.gzip is None:
            self._head += data
            if len(self._head) < HEAD_SIZE:
                return
            data, self._head = self._head, b""
            self._start(data)
        self._feed(data)

    def _start(self, head: bytes) -> None:
        compression = detect(head)
        if compression == "zstd":
            raise UnsupportedOperation("zstd-compressed schema 1 layers cannot be converted")
        self.gzip = compression == "gzip"
        if self.gzip:
            self._inflater = GzipInflater()

    def _feed(self, data: bytes) -> None:
        if self._inflater is None:
            self._hash.update(data)
            return
        for piece in self._inflater.feed(data):
            self._hash.update(piece)

    def finish(self) -> Digest:
        """The diff ID; raises if the gzip stream was cut short."""
        if self.gzip is None:
            head, self._head = self._head, b""
            self._start(head)
            self._feed(head)
        if self._inflater is not None:
            self._inflater.finish()
        return Digest("sha256", self._hash.hexdigest())


@dataclass(frozen=True, slots=True)
class V1Layer:
    """One schema 1 ``fsLayers``/``history`` pair."""

    blob: Digest
    v1: dict[str, Any]

    @property
    def throwaway(self) -> bool:
        """Docker's marker for a history entry with no filesystem change (ENV, CMD...)."""
        return self.v1.get("throwaway") is True


def v1_layers(payload: bytes) -> list[V1Layer]:
    """The schema 1 payload's layers, top first as in the manifest, repeated ids collapsed."""
    document = json.loads(payload)
    layers = []
    for i, (fs_layer, entry) in enumerate(zip(document["fsLayers"], document["history"], strict=True)):
        try:
            v1 = jsontext.loads(entry["v1Compatibility"])
        except ValueError as exc:
            raise ClientError(f"history[{i}].v1Compatibility is not JSON: {exc}") from None
        if not isinstance(v1, dict):
            raise ClientError(f"history[{i}].v1Compatibility is not a JSON object")
        layers.append(V1Layer(Digest.parse(fs_layer["blobSum"]), v1))
    if not layers:
        raise ClientError("schema 1 manifest has no layers")
    collapsed = [
        layer
        for i, layer in enumerate(layers)
        if i + 1 == len(layers) or "id" not in layer.v1 or layer.v1["id"] != layers[i + 1].v1.get("id")
    ]
    return collapsed


def _history_entry(layer: V1Layer) -> dict[str, Any]:
    v1 = layer.v1
    entry: dict[str, Any] = {}
    if v1.get("created"):
        entry["created"] = v1["created"]
    if v1.get("author"):
        entry["author"] = v1["author"]
    command = (v1.get("container_config") or {}).get("Cmd") or []
    if command:
        entry["created_by"] = " ".join(str(part) for part in command)
    if v1.get("comment"):
        entry["comment"] = v1["comment"]
    if layer.throwaway:
        entry["empty_layer"] = True
    return entry


def _marshal(value: Any) -> bytes:
    """Go's ``json.Marshal``: sorted keys, no spaces, HTML characters escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, escape)
    return text.encode("utf-8")


def build_config(layers: list[V1Layer], diff_ids: list[Digest], architecture: str | None) -> bytes:
    """The image config: the top v1Compatibility, minus v1-only fields, plus rootfs and history.

    ``architecture`` (the manifest's) and ``os`` ``linux`` fill in what the v1
    JSON lacks, because a schema 2 config must name both.
    """
    config = {k: v for k, v in layers[0].v1.items() if k not in V1_ONLY_FIELDS}
    config.setdefault("architecture", architecture or "amd64")
    config.setdefault("os", "linux")
    config["rootfs"] = {"type": "layers", "diff_ids": [str(d) for d in diff_ids]}
    config["history"] = [_history_entry(layer) for layer in reversed(layers)]
    return _marshal(config)


def build_manifest(config: bytes, layers: list[Descriptor]) -> bytes:
    """A Docker schema 2 manifest, three-space indented as Distribution writes them."""
    document = {
        "schemaVersion": 2,
        "mediaType": str(MediaType.DOCKER_MANIFEST),
        "config": {
            "mediaType": str(MediaType.DOCKER_CONFIG),
            "size": len(config),
            "digest": str(Digest.of(config)),
        },
        "layers": [{"mediaType": d.media_type, "size": d.size, "digest": str(d.digest)} for d in layers],
    }
    return json.dumps(document, indent=3).encode()


@dataclass(frozen=True, slots=True)
class _Moved:
    descriptor: Descriptor
    diff_id: Digest
    outcome: str


def _move_layer(
    client: RegistryClient,
    src: Reference,
    dst: Reference,
    digest: Digest,
    chunk_size: int,
    progress: TransferProgress | None,
) -> _Moved:
    size = client.blob_size(src, digest)
    if size is None:
        raise ClientError(f"{src}: layer {digest} is missing")
    if progress is not None:
        progress.add_total(size)
    hasher = DiffIDHasher()

    def source() -> Iterator[bytes]:
        nonlocal hasher
        hasher = DiffIDHasher()
        for chunk in blobs.stream(client, src, digest, size):
            hasher.update(chunk)
            yield chunk
        hasher.complete = True

    mount_from = [src.repository] if src.registry == dst.registry and src.repository != dst.repository else []
    outcome = send_blob(
        client,
        dst,
        Descriptor(MediaType.DOCKER_LAYER, digest, size),
        None,
        source,
        mount_from=mount_from,
        chunk_size=chunk_size,
        progress=progress,
    )
    if not hasher.complete:  # skipped or mounted: read once more, for the diff ID only
        for _ in source():
            pass
    media_type = MediaType.DOCKER_LAYER if hasher.gzip else DOCKER_LAYER_UNCOMPRESSED
    return _Moved(Descriptor(media_type, digest, size), hasher.finish(), outcome)


def copy_converted(
    client: RegistryClient,
    src: Reference,
    dst: Reference,
    top: RawManifest,
    *,
    chunk_size: int = blob_uploads.DEFAULT_CHUNK_SIZE,
    progress: TransferProgress | None = None,
) -> TransferResult:
    """Copy the schema 1 image ``top`` (from ``src``) to ``dst`` as a Docker schema 2 image.

    The signatures are verified first; layers go before the config, the
    manifest last, so ``dst`` never names an incomplete image.
    """
    manifest = top.parse()  # verifies the JWS signatures
    layers = v1_layers(manifest.payload)
    kept = [layer for layer in reversed(layers) if not layer.throwaway]  # base first
    unique = list(dict.fromkeys(layer.blob for layer in kept))
    with ThreadPoolExecutor(max_workers=client.workers) as pool:
        moved = dict(
            zip(
                unique,
                pool.map(lambda d: _move_layer(client, src, dst, d, chunk_size, progress), unique),
                strict=True,
            )
        )
    config = build_config(layers, [moved[layer.blob].diff_id for layer in kept], manifest.architecture)
    config_descriptor = Descriptor(MediaType.DOCKER_CONFIG, Digest.of(config), len(config))
    config_outcome = send_blob(client, dst, config_descriptor, None, lambda: [config])
    raw = build_manifest(config, [moved[layer.blob].descriptor for layer in kept])
    target = dst if dst.tag is not None else dst.with_digest(Digest.of(raw))
    if dst.tag is not None and dst.digest is not None:
        target = Reference(dst.registry, dst.repository, dst.tag, None)
    digest = client.put_manifest(target, raw, MediaType.DOCKER_MANIFEST)
    outcomes = [m.outcome for m in moved.values()] + [config_outcome]
    return TransferResult(
        digest,
        str(MediaType.DOCKER_MANIFEST),
        1,
        outcomes.count("uploaded"),
        outcomes.count("skipped"),
        outcomes.count("mounted"),
        sum(m.descriptor.size for m in moved.values() if m.outcome == "uploaded")
        + (len(config) if config_outcome == "uploaded" else 0),
    )
