"""Test content: random blobs on disk, OCI manifests, OCI image layouts, and pushing them over the API."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .httpc import Connection, expect

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
ACCEPT = f"{MANIFEST_TYPE}, application/vnd.docker.distribution.manifest.v2+json"


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(8 << 20):
            h.update(block)
    return "sha256:" + h.hexdigest()


def random_file(path: Path, size: int) -> Blob:
    """``size`` incompressible bytes (os.urandom) written to ``path``."""
    with open(path, "wb") as file:
        left = size
        while left:
            block = os.urandom(min(left, 16 << 20))
            file.write(block)
            left -= len(block)
    return Blob(sha256_file(path), size)


def refresh(path: Path) -> Blob:
    """New content for a big random file without rewriting it: new random first 64 bytes."""
    with open(path, "r+b") as file:
        file.write(os.urandom(64))
    return Blob(sha256_file(path), path.stat().st_size)


def config_bytes(label: str) -> bytes:
    return json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
         "config": {"Labels": {"bench": label}}},
        sort_keys=True,
    ).encode()


def manifest_bytes(config: Blob, layers: list[Blob]) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": config.digest, "size": config.size},
            "layers": [{"mediaType": LAYER_TYPE, "digest": b.digest, "size": b.size} for b in layers],
        },
        sort_keys=True,
    ).encode()


def of_bytes(data: bytes) -> Blob:
    return Blob("sha256:" + hashlib.sha256(data).hexdigest(), len(data))


# over the API (works on both registries: Location may be absolute, and carries state)


def push_blob_bytes(conn: Connection, repository: str, data: bytes) -> Blob:
    blob = of_bytes(data)
    start = expect(conn.request("POST", f"/v2/{repository}/blobs/uploads/"), 202)
    location = start.header("location") or ""
    sep = "&" if "?" in location else "?"
    expect(conn.request("PUT", f"{location}{sep}digest={blob.digest}", body=data,
                        headers={"content-type": "application/octet-stream"}), 201)
    return blob


def mount_blob(conn: Connection, repository: str, source: str, blob: Blob) -> None:
    reply = conn.request("POST", f"/v2/{repository}/blobs/uploads/?mount={blob.digest}&from={source}")
    expect(reply, 201)


def put_manifest(conn: Connection, repository: str, reference: str, manifest: bytes) -> None:
    expect(conn.request("PUT", f"/v2/{repository}/manifests/{reference}", body=manifest,
                        headers={"content-type": MANIFEST_TYPE}), 201)


# OCI image layouts (what `cargohold push` and `skopeo copy oci:` read)


def write_layout(layout: Path, tag: str, layers: list[tuple[Path, Blob]], label: str) -> Blob:
    """An OCI layout whose image ``tag`` has the given layer files (moved into the layout)."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    for path, blob in layers:
        os.replace(path, blobs / blob.digest.split(":", 1)[1])
    config = config_bytes(label)
    config_blob = of_bytes(config)
    (blobs / config_blob.digest.split(":", 1)[1]).write_bytes(config)
    manifest = manifest_bytes(config_blob, [b for _, b in layers])
    manifest_blob = of_bytes(manifest)
    (blobs / manifest_blob.digest.split(":", 1)[1]).write_bytes(manifest)
    index = {
        "schemaVersion": 2,
        "manifests": [{"mediaType": MANIFEST_TYPE, "digest": manifest_blob.digest, "size": manifest_blob.size,
                       "annotations": {"org.opencontainers.image.ref.name": tag}}],
    }
    (layout / "index.json").write_text(json.dumps(index))
    return manifest_blob


def layout_blob_path(layout: Path, blob: Blob) -> Path:
    return layout / "blobs" / "sha256" / blob.digest.split(":", 1)[1]
