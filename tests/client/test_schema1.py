"""Schema 1: a copy to another name or tag re-signs the manifest."""

from __future__ import annotations

import json

from cargohold.client import Reference, RegistryClient, blob_uploads, inspect
from cargohold.client.copy import copy
from cargohold.digest import Digest
from cargohold.formats import MediaType, parse_manifest
from cargohold.formats.schema1 import generate_key, sign, verify_signatures

from .conftest import RunningRegistry
from .images import layer_bytes


def push_schema1(client: RegistryClient, ref: Reference) -> bytes:
    layer, _ = layer_bytes(500)
    digest = Digest.of(layer)
    blob_uploads.upload(client, ref, digest, len(layer), [layer])
    payload = {
        "schemaVersion": 1,
        "name": ref.repository,
        "tag": ref.tag,
        "architecture": "amd64",
        "fsLayers": [{"blobSum": str(digest)}],
        "history": [
            {
                "v1Compatibility": json.dumps(
                    {"id": "a" * 64, "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/true"]}}
                )
            }
        ],
    }
    raw = sign(payload, generate_key())
    client.put_manifest(ref, raw, MediaType.DOCKER_SCHEMA1_SIGNED)  # both registries of the fixture take schema 1
    return raw


def test_copy_schema1_to_new_name_resigns(registry: RunningRegistry, client: RegistryClient) -> None:
    src = Reference.parse(registry.ref(registry.repo("s1"), "old"))
    push_schema1(client, src)
    fetched = client.get_manifest(src)
    assert fetched.media_type == MediaType.DOCKER_SCHEMA1_SIGNED
    assert inspect(client, src).config.cmd == ["/bin/true"]
    dst = Reference.parse(registry.ref(registry.repo("s1copy"), "new"))
    copy(client, src, dst)
    copied = client.get_manifest(dst)
    verify_signatures(copied.raw)
    manifest = parse_manifest(copied.raw, copied.media_type)
    assert (manifest.name, manifest.tag) == (dst.repository, "new")
