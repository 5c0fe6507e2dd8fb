"""Small test images built offline: random tar layers in OCI layouts, single-arch and multi-arch."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from cargohold.client.layout import OCILayout
from cargohold.digest import Digest
from cargohold.formats import Descriptor, MediaType, Platform


def layer_bytes(size: int, name: str = "file.bin") -> tuple[bytes, Digest]:
    """A gzipped tar holding one file of ``size`` random bytes; returns (blob, diff_id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = 0
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), Digest.of(tar_bytes)


@dataclass(frozen=True)
class BuiltImage:
    manifest: bytes
    digest: Digest
    media_type: str
    blobs: dict[Digest, bytes]

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.manifest))


def build_image(
    layer_sizes: tuple[int, ...] = (2048, 70_000),
    *,
    architecture: str = "amd64",
    os_name: str = "linux",
    variant: str | None = None,
    docker: bool = False,
    labels: dict[str, str] | None = None,
    base: list[tuple[bytes, Digest]] | None = None,
) -> BuiltImage:
    """An image manifest (OCI, or Docker schema 2) with random layers and a small config.

    ``base`` layers (blob, diff ID), e.g. from :func:`layer_bytes`, go below the random ones.
    """
    blobs: dict[Digest, bytes] = {}
    layers = []
    diff_ids = []
    made = [layer_bytes(size, f"layer{i}.bin") for i, size in enumerate(layer_sizes)]
    for data, diff_id in (base or []) + made:
        digest = Digest.of(data)
        blobs[digest] = data
        diff_ids.append(str(diff_id))
        layers.append(
            {
                "mediaType": MediaType.DOCKER_LAYER if docker else MediaType.OCI_LAYER_GZIP,
                "digest": str(digest),
                "size": len(data),
            }
        )
    config_obj: dict[str, object] = {
        "architecture": architecture,
        "os": os_name,
        "created": "2024-01-02T03:04:05Z",
        "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["/bin/sh"], "Labels": labels or {"test": "yes"}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    if variant:
        config_obj["variant"] = variant
    config = json.dumps(config_obj).encode()
    blobs[Digest.of(config)] = config
    media_type = MediaType.DOCKER_MANIFEST if docker else MediaType.OCI_MANIFEST
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": MediaType.DOCKER_CONFIG if docker else MediaType.OCI_CONFIG,
                "digest": str(Digest.of(config)),
                "size": len(config),
            },
            "layers": layers,
        },
        indent=3,
    ).encode()
    return BuiltImage(manifest, Digest.of(manifest), media_type, blobs)


def build_index(images: dict[Platform, BuiltImage]) -> BuiltImage:
    """An OCI index over ``images``; its blobs include the child manifests."""
    blobs: dict[Digest, bytes] = {}
    entries = []
    for platform, image in images.items():
        blobs.update(image.blobs)
        blobs[image.digest] = image.manifest
        entry = image.descriptor.to_json()
        entry["platform"] = platform.to_json()
        entries.append(entry)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "manifests": entries}).encode()
    return BuiltImage(manifest, Digest.of(manifest), MediaType.OCI_INDEX, blobs)


def write_layout(path: Path, image: BuiltImage, tag: str) -> OCILayout:
    """Write ``image`` into an OCI layout at ``path`` under ``tag``."""
    layout = OCILayout(path)
    layout.create()
    for digest, data in image.blobs.items():
        layout.write_blob_bytes(digest, data)
    layout.write_blob_bytes(image.digest, image.manifest)
    layout.set_tag(tag, image.descriptor)
    return layout


def multiarch() -> BuiltImage:
    return build_index(
        {
            Platform("amd64", "linux"): build_image((1000,), architecture="amd64"),
            Platform("arm64", "linux", "v8"): build_image((1200,), architecture="arm64", variant="v8"),
        }
    )
