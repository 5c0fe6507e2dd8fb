"""skopeo (containers/image) against a real cargohold: copy in and out, inspect, tags, delete, indexes."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.servers import CargoholdServer

from . import scenarios
from .tools import (
    BuiltImages,
    Clients,
    OciLayout,
    assert_blobs_intact,
    assert_same_image,
    request_log,
    requires_skopeo,
)

pytestmark = requires_skopeo


@pytest.mark.scaled
def test_oci_layout_round_trip_is_byte_identical(
    clients: Clients, images: BuiltImages, fresh_registry: CargoholdServer, tmp_path: Path
) -> None:
    scenarios.oci_round_trip(clients.skopeo, fresh_registry.host, images.oci, "small", tmp_path)
    fresh_registry.assert_storage_consistent()


def test_tags_and_delete(clients: Clients, images: BuiltImages, fresh_registry: CargoholdServer) -> None:
    scenarios.tags_and_delete(clients.skopeo, fresh_registry.host, images.oci)
    fresh_registry.assert_storage_consistent()


@pytest.mark.scaled
def test_copy_all_of_an_index(
    clients: Clients, images: BuiltImages, fresh_registry: CargoholdServer, tmp_path: Path
) -> None:
    index = scenarios.index_round_trip(clients.skopeo, fresh_registry.host, images.oci, "multi", tmp_path)
    platforms = {(m["platform"]["architecture"], m["platform"].get("variant")) for m in index["manifests"]}
    assert platforms == {("amd64", None), ("arm64", "v8")}
    fresh_registry.assert_storage_consistent()


def test_docker_schema2_round_trip(
    clients: Clients, images: BuiltImages, fresh_registry: CargoholdServer, tmp_path: Path
) -> None:
    digest = scenarios.docker_round_trip(clients.skopeo, fresh_registry.host, images.docker_dir, tmp_path)
    response = httpx.head(
        f"{fresh_registry.url}/v2/interop/docker/manifests/v2s2",
        headers={"accept": scenarios.DOCKER_MANIFEST},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == scenarios.DOCKER_MANIFEST
    assert response.headers["docker-content-digest"] == digest
    fresh_registry.assert_storage_consistent()


def test_convert_oci_to_docker_schema2_on_push(
    clients: Clients, images: BuiltImages, fresh_registry: CargoholdServer
) -> None:
    ref = f"docker://{fresh_registry.host}/interop/converted:v2s2"
    clients.skopeo.copy(f"oci:{images.oci.path}:small", ref, "--format", "v2s2")
    manifest = json.loads(clients.skopeo.inspect_raw(ref))
    assert manifest["mediaType"] == scenarios.DOCKER_MANIFEST
    assert [layer["digest"] for layer in manifest["layers"]] == [
        layer["digest"] for layer in images.oci.manifest("small")["layers"]
    ]
    fresh_registry.assert_storage_consistent()


@pytest.mark.scaled
def test_copy_between_repositories_mounts_blobs(
    clients: Clients, images: BuiltImages, fresh_registry: CargoholdServer, tmp_path: Path
) -> None:
    host = fresh_registry.host
    clients.skopeo.copy(f"oci:{images.oci.path}:small", f"docker://{host}/interop/source:1")
    before = len(request_log(fresh_registry))
    clients.skopeo.copy(f"docker://{host}/interop/source:1", f"docker://{host}/interop/target:1")
    requests = request_log(fresh_registry)[before:]

    posts = [r for r in requests if r["method"] == "POST" and "/interop/target/blobs/uploads" in r["path"]]
    mounted = [r for r in posts if r["status"] == 201]  # 201 to a POST is a finished cross-repository mount
    layers = images.oci.manifest("small")["layers"]
    # skopeo mounts every layer; it uploads the (small) config blob afresh instead of mounting it
    assert len(mounted) == len(layers), f"layers were not mounted: {posts}"
    puts = [r for r in requests if r["method"] == "PUT" and "/blobs/uploads/" in r["path"]]
    assert len(puts) <= 1, f"a mountable layer was uploaded again: {requests}"

    back = OciLayout(tmp_path / "back")
    clients.skopeo.copy(f"docker://{host}/interop/target:1", f"oci:{back.path}:small")
    assert_same_image(images.oci, "small", back, "small")
    fresh_registry.assert_storage_consistent()


def test_signed_schema1_push(
    clients: Clients, images: BuiltImages, fresh_registry: CargoholdServer, tmp_path: Path
) -> None:
    """skopeo --format v2s1 signs a schema 1 manifest with a fresh key; cargohold must verify and keep it."""
    raw, digest = scenarios.schema1_push(clients.skopeo, fresh_registry.host, images.oci, "small")
    ref = f"docker://{fresh_registry.host}/interop/schema1:small"
    back = OciLayout(tmp_path / "back")  # and pulled back, converted to OCI again
    clients.skopeo.copy(ref, f"oci:{back.path}:small")
    assert [layer["digest"] for layer in back.manifest("small")["layers"]] == [
        layer["digest"] for layer in images.oci.manifest("small")["layers"]
    ]
    assert_blobs_intact(back)
    url = f"{fresh_registry.url}/v2/interop/schema1/manifests"
    response = httpx.get(f"{url}/small", headers={"accept": scenarios.DOCKER_SCHEMA1_SIGNED})
    assert response.status_code == 200
    assert response.headers["content-type"] == scenarios.DOCKER_SCHEMA1_SIGNED
    assert response.headers["docker-content-digest"] == digest
    assert response.content == raw

    # the same manifest with one signature byte changed must be refused
    document = json.loads(raw)
    signature = document["signatures"][0]["signature"]
    flipped = ("A" if signature[10] != "A" else "B").join([signature[:10], signature[11:]])
    tampered = raw.replace(signature.encode(), flipped.encode())
    assert tampered != raw
    response = httpx.put(
        f"{url}/tampered", content=tampered, headers={"content-type": scenarios.DOCKER_SCHEMA1_SIGNED}
    )
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["code"] in ("MANIFEST_UNVERIFIED", "MANIFEST_INVALID")
    assert httpx.get(f"{url}/tampered").status_code == 404
    fresh_registry.assert_storage_consistent()


def test_debian_rootfs_round_trip(
    clients: Clients, debian: OciLayout, fresh_registry: CargoholdServer, tmp_path: Path
) -> None:
    """A real Debian minbase root filesystem (tens of MB, one layer) in and out, byte-identical."""
    scenarios.oci_round_trip(clients.skopeo, fresh_registry.host, debian, "bookworm", tmp_path,
                             repo="library/debian")
    fresh_registry.assert_storage_consistent()


@pytest.mark.scaled
def test_concurrent_pushes_of_the_same_blobs(
    clients: Clients, images: BuiltImages, debian: OciLayout, fresh_registry: CargoholdServer, tmp_path: Path
) -> None:
    """Several skopeo processes push the same large layer at once, to other and to the same repositories."""
    host = fresh_registry.host
    targets = [f"docker://{host}/race/r{i}:bookworm" for i in range(3)] + [f"docker://{host}/race/r0:again"] * 2
    with ThreadPoolExecutor(len(targets)) as pool:
        list(pool.map(lambda ref: clients.skopeo.copy(f"oci:{debian.path}:bookworm", ref), targets))
    fresh_registry.assert_storage_consistent()
    expected = debian.descriptor("bookworm")["digest"]
    for ref in set(targets):
        assert clients.skopeo.inspect(ref)["Digest"] == expected
    back = OciLayout(tmp_path / "back")
    clients.skopeo.copy(targets[-1], f"oci:{back.path}:bookworm")
    assert_same_image(debian, "bookworm", back, "bookworm")


def test_foreign_layers_are_not_required(
    clients: Clients, images: BuiltImages, fresh_registry: CargoholdServer, tmp_path: Path
) -> None:
    """skopeo never uploads a foreign (non-distributable) layer that has URLs; the manifest is still accepted."""
    source = tmp_path / "foreign"
    shutil.copytree(images.docker_dir, source)
    manifest = json.loads((source / "manifest.json").read_bytes())
    foreign = b"a layer that lives elsewhere"
    manifest["layers"].insert(0, {
        "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "size": len(foreign),
        "digest": scenarios.sha256(foreign),
        "urls": ["https://example.invalid/foreign.tar.gz"],
    })
    raw = json.dumps(manifest).encode()
    (source / "manifest.json").write_bytes(raw)
    ref = f"docker://{fresh_registry.host}/interop/foreign:1"
    clients.skopeo.copy(f"dir:{source}", ref)
    assert clients.skopeo.inspect_raw(ref) == raw
    blob = httpx.head(f"{fresh_registry.url}/v2/interop/foreign/blobs/{scenarios.sha256(foreign)}")
    assert blob.status_code == 404
    fresh_registry.assert_storage_consistent()
