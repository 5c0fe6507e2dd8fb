"""Schema 1 for legacy clients: generated from a stored image, signed with the registry's key, kept."""

from __future__ import annotations

import concurrent.futures
import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cargohold.formats.schema1 import verify_signatures
from tests.support.backends import Setup
from tests.support.jws import b64url, jws_verify
from tests.support.postgres import query
from tests.support.servers import cargohold

from .helpers import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    codes,
    descriptor,
    push_blob,
    put_manifest,
    sha256,
)

SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
UNSIGNED = "application/vnd.docker.distribution.manifest.v1+json"
FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
EMPTY_LAYER = "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"


# -- images with a history ------------------------------------------------------------------


def layer_blob(name: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(name)
        tar.addfile(info, io.BytesIO(name.encode()))
    return gzip.compress(out.getvalue(), mtime=0)


def push_image(
    client: httpx.Client, repo: str, seed: str, *, media_type: str = DOCKER_MANIFEST, arch: str = "amd64",
    config_type: str | None = None, layer_types: tuple[str, ...] | None = None, history: bool = True,
) -> tuple[bytes, dict[str, Any]]:
    """Push a two-layer image whose history has an empty layer between its two; (manifest, config)."""
    docker = media_type == DOCKER_MANIFEST
    layers = [layer_blob(f"{seed}-{i}") for i in range(2)]
    config: dict[str, Any] = {
        "architecture": arch, "os": "linux", "created": "2024-05-06T07:08:09.5Z",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(gzip.decompress(b)) for b in layers]},
    }
    if history:
        config["history"] = [
            {"created": "2024-05-06T07:08:07Z", "created_by": f"ADD {seed}-0 /"},
            {"created": "2024-05-06T07:08:08Z", "created_by": "ENV PATH=/bin", "empty_layer": True},
            {"created": "2024-05-06T07:08:09.5Z", "created_by": f"ADD {seed}-1 /"},
        ]
    raw_config = json.dumps(config).encode()
    for blob in (raw_config, *layers):
        push_blob(client, repo, blob)
    types = layer_types or ((DOCKER_LAYER if docker else OCI_LAYER),) * 2
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": media_type,
        "config": descriptor(config_type or (DOCKER_CONFIG if docker else OCI_CONFIG), raw_config),
        "layers": [descriptor(t, b) for t, b in zip(types, layers, strict=True)],
    }).encode()
    return manifest, config


def tag_image(client: httpx.Client, repo: str, tag: str, seed: str, **options: Any) -> tuple[bytes, dict[str, Any]]:
    manifest, config = push_image(client, repo, seed, **options)
    r = put_manifest(client, repo, tag, manifest, options.get("media_type", DOCKER_MANIFEST))
    assert r.status_code == 201, r.text
    return manifest, config


def tag_list(client: httpx.Client, repo: str, tag: str, *, media_type: str = DOCKER_LIST) -> dict[str, bytes]:
    """Push an arm64 and an amd64 image and a list of both; the images by architecture."""
    child_type = DOCKER_MANIFEST if media_type == DOCKER_LIST else OCI_MANIFEST
    images, entries = {}, []
    for arch in ("arm64", "amd64"):
        raw, _ = push_image(client, repo, f"{tag}-{arch}", media_type=child_type, arch=arch)
        assert put_manifest(client, repo, sha256(raw), raw, child_type).status_code == 201
        images[arch] = raw
        entries.append(descriptor(child_type, raw, platform={"architecture": arch, "os": "linux"}))
    listing = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": entries}).encode()
    assert put_manifest(client, repo, tag, listing, media_type).status_code == 201
    return images


def get(client: httpx.Client, repo: str, reference: str, accept: str | None = SIGNED, **headers: str) -> httpx.Response:
    if accept is not None:
        headers["Accept"] = accept
    return client.get(f"/v2/{repo}/manifests/{reference}", headers=headers)


def layers_of(manifest: bytes) -> list[str]:
    return [layer["digest"] for layer in json.loads(manifest)["layers"]]


# -- tests ----------------------------------------------------------------------------------


def test_a_schema1_client_gets_a_signed_schema1_manifest_of_the_image(client: httpx.Client, repo: str) -> None:
    image, config = tag_image(client, repo, "v1", "one")
    r = get(client, repo, "v1")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == SIGNED
    payload, jwk = jws_verify(r.content)
    assert verify_signatures(r.content) == payload  # cargohold's own verifier agrees
    assert r.headers["docker-content-digest"] == sha256(payload) == r.headers["etag"].strip('"')
    document = json.loads(payload)
    assert (document["schemaVersion"], document["name"], document["tag"]) == (1, repo, "v1")
    assert document["architecture"] == "amd64"
    bottom, top = layers_of(image)
    assert [f["blobSum"] for f in document["fsLayers"]] == [top, EMPTY_LAYER, bottom]
    newest, empty, oldest = (json.loads(h["v1Compatibility"]) for h in document["history"])
    assert oldest["container_config"] == {"Cmd": ["ADD one-0 /"]} and "parent" not in oldest
    assert empty["parent"] == oldest["id"] and empty["throwaway"] is True
    assert empty["created"] == "2024-05-06T07:08:08Z"
    assert newest["parent"] == empty["id"] and newest["config"] == config["config"]
    assert newest["created"] == config["created"] and "rootfs" not in newest and "history" not in newest
    assert jwk["kty"] == "EC"
    # every blob it names can be fetched from the repository, the empty layer too
    for layer in document["fsLayers"]:
        assert client.get(f"/v2/{repo}/blobs/{layer['blobSum']}").status_code == 200
    assert gzip.decompress(client.get(f"/v2/{repo}/blobs/{EMPTY_LAYER}").content) == bytes(1024)


@pytest.mark.parametrize("accept", [SIGNED, UNSIGNED, f"{SIGNED}, {UNSIGNED}", None, "*/*"])
def test_every_schema1_accept_gets_the_same_kept_bytes(client: httpx.Client, repo: str, accept: str | None) -> None:
    """Generated once: every request, HEAD and by digest, gets the same bytes (a new signature would differ)."""
    tag_image(client, repo, "v1", "kept")
    first = get(client, repo, "v1", accept)
    assert first.status_code == 200 and first.headers["content-type"] == SIGNED, first.text
    digest = first.headers["docker-content-digest"]
    for again in (get(client, repo, "v1", SIGNED), get(client, repo, "v1", UNSIGNED), get(client, repo, "v1", None)):
        assert again.content == first.content and again.headers["docker-content-digest"] == digest
    head = client.head(f"/v2/{repo}/manifests/v1", headers={"Accept": SIGNED})
    assert head.headers["content-length"] == str(len(first.content)) and head.headers["docker-content-digest"] == digest
    # a client that got it by tag may ask by digest (Distribution 2.8 answers 404 there)
    by_digest = get(client, repo, digest, SIGNED)
    assert by_digest.status_code == 200 and by_digest.content == first.content
    assert by_digest.headers["content-type"] == SIGNED and by_digest.headers["docker-content-digest"] == digest


def test_by_tag_a_docker_image_goes_as_stored_only_to_a_client_that_names_its_type(
    client: httpx.Client, repo: str
) -> None:
    """Distribution 2.8's rule: no Accept or a wildcard is a schema 1 client for a Docker image."""
    image, _ = tag_image(client, repo, "docker", "named")
    for accept in (None, "*/*", "application/*"):
        assert get(client, repo, "docker", accept).headers["content-type"] == SIGNED, accept
    for accept in (DOCKER_MANIFEST, f"{SIGNED}, {DOCKER_MANIFEST}", f"{DOCKER_MANIFEST}, */*"):
        r = get(client, repo, "docker", accept)
        assert r.status_code == 200 and r.content == image, accept
    # by digest, as stored to a client that takes anything (a digest names those bytes), as Distribution
    assert get(client, repo, sha256(image), None).content == image
    # OCI manifests go as stored to a client that takes anything (Distribution answers 404 there)
    oci, _ = tag_image(client, repo, "oci", "named-oci", media_type=OCI_MANIFEST)
    for accept in (OCI_MANIFEST, None, "*/*", f"{SIGNED}, {OCI_MANIFEST}"):
        r = get(client, repo, "oci", accept)
        assert r.status_code == 200 and r.content == oci, accept
    # a client that takes neither the stored type nor schema 1: 404, as before
    r = get(client, repo, "docker", OCI_MANIFEST)
    assert r.status_code == 404 and codes(r) == ["MANIFEST_UNKNOWN"]


def test_an_oci_image_converts_for_a_client_that_asks_for_schema1(client: httpx.Client, repo: str) -> None:
    image, _ = tag_image(client, repo, "v1", "oci", media_type=OCI_MANIFEST)
    r = get(client, repo, "v1", UNSIGNED)
    assert r.status_code == 200 and r.headers["content-type"] == SIGNED, r.text
    payload, _ = jws_verify(r.content)
    assert [f["blobSum"] for f in json.loads(payload)["fsLayers"]] == [layers_of(image)[1], EMPTY_LAYER,
                                                                        layers_of(image)[0]]


def test_the_generated_manifest_follows_the_tag(client: httpx.Client, repo: str) -> None:
    first_image, _ = tag_image(client, repo, "v1", "before")
    first = get(client, repo, "v1")
    moved_image, _ = tag_image(client, repo, "v1", "after")
    moved = get(client, repo, "v1")
    assert moved.status_code == 200
    assert moved.headers["docker-content-digest"] != first.headers["docker-content-digest"]
    assert json.loads(moved.content)["fsLayers"][0]["blobSum"] == layers_of(moved_image)[1]
    assert get(client, repo, "v1").content == moved.content
    # the first one stays fetchable by digest while its image is stored, and goes with it
    assert get(client, repo, first.headers["docker-content-digest"]).content == first.content
    assert client.delete(f"/v2/{repo}/manifests/{sha256(first_image)}").status_code == 202
    gone = get(client, repo, first.headers["docker-content-digest"])
    assert gone.status_code == 404 and codes(gone) == ["MANIFEST_UNKNOWN"]


@pytest.mark.parametrize("list_type", [DOCKER_LIST, OCI_INDEX])
def test_a_list_converts_the_image_for_the_clients_platform(client: httpx.Client, repo: str, list_type: str) -> None:
    images = tag_list(client, repo, "multi", media_type=list_type)
    default = get(client, repo, "multi")
    assert default.status_code == 200 and default.headers["content-type"] == SIGNED, default.text
    document = json.loads(default.content)
    assert document["architecture"] == "amd64" and document["tag"] == "multi"
    assert document["fsLayers"][0]["blobSum"] == layers_of(images["amd64"])[1]
    # an old docker names its platform in its User-Agent
    agent = "docker/1.9.1 go/go1.4.2 git-commit/a34a1d5 kernel/3.13.0 os/linux arch/arm64"
    arm = get(client, repo, "multi", **{"User-Agent": agent})
    assert arm.status_code == 200 and json.loads(arm.content)["architecture"] == "arm64"
    assert json.loads(arm.content)["fsLayers"][0]["blobSum"] == layers_of(images["arm64"])[1]
    assert get(client, repo, "multi").content == default.content  # each kept apart
    missing = get(client, repo, "multi", **{"User-Agent": "docker/1.9.1 os/linux arch/s390x"})
    assert missing.status_code == 404 and codes(missing) == ["MANIFEST_UNKNOWN"]
    assert "no linux/s390x image" in missing.json()["errors"][0]["message"]


def test_a_docker_list_without_accept_gets_schema1_of_its_amd64_image(client: httpx.Client, repo: str) -> None:
    """As Distribution 2.8: the list is served only to a client that names its type."""
    images = tag_list(client, repo, "multi")
    for accept in (None, "*/*"):
        r = get(client, repo, "multi", accept)
        assert r.headers["content-type"] == SIGNED, r.text
        assert json.loads(r.content)["fsLayers"][0]["blobSum"] == layers_of(images["amd64"])[1]
    assert get(client, repo, "multi", DOCKER_MANIFEST).content == images["amd64"]
    assert get(client, repo, "multi", DOCKER_LIST).headers["content-type"] == DOCKER_LIST


@pytest.mark.parametrize(
    ("options", "code", "reason"),
    [
        ({"media_type": OCI_MANIFEST, "config_type": "application/vnd.example.sbom"}, "MANIFEST_UNKNOWN",
         "it is an artifact"),
        ({"layer_types": (DOCKER_LAYER, FOREIGN_LAYER)}, "MANIFEST_INVALID", "layers[1] is a foreign layer"),
        ({"history": False}, "MANIFEST_INVALID", "the image config has no history"),
    ],
)
def test_what_cannot_be_converted_is_refused_with_the_reason(
    client: httpx.Client, repo: str, options: dict[str, Any], code: str, reason: str
) -> None:
    tag_image(client, repo, "v1", "refused", **options)
    r = get(client, repo, "v1", SIGNED)
    assert codes(r) == [code], r.text
    assert r.status_code == (404 if code == "MANIFEST_UNKNOWN" else 400)
    assert reason in r.json()["errors"][0]["message"]
    assert client.get(f"/v2/{repo}/blobs/{EMPTY_LAYER}").status_code == 404  # nothing half-done left


def test_the_same_bytes_from_every_worker_and_after_a_restart(tmp_path: Path, setup: Setup) -> None:
    with (cargohold(tmp_path, "--workers", "2", env=setup.env, database_url=setup.database_url) as server,
          httpx.Client(base_url=server.url) as client):
        tag_image(client, "legacy/app", "v1", "restart")

        def fetch(_: int) -> bytes:
            with httpx.Client(base_url=server.url) as own:  # a connection each: both workers answer
                r = get(own, "legacy/app", "v1")
                assert r.status_code == 200, r.text
                return r.content

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = set(pool.map(fetch, range(24)))
        assert len(answers) == 1
        (served,) = answers
    with (cargohold(tmp_path, env=setup.env, database_url=setup.database_url) as again,
          httpx.Client(base_url=again.url) as client):
        assert get(client, "legacy/app", "v1").content == served
        # a tag generated after the restart is signed with the same key, kept in the database
        tag_image(client, "legacy/app", "v2", "restart-2")
        _, jwk = jws_verify(get(client, "legacy/app", "v2").content)
        assert jwk == json.loads(served)["signatures"][0]["header"]["jwk"]


def test_a_configured_rsa_key_signs(tmp_path: Path, setup: Setup) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "schema1.pem"
    key_file.write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ))
    env = {**setup.env, "CARGOHOLD_COMPATIBILITY_SCHEMA1_SIGNINGKEYFILE": str(key_file)}
    with (cargohold(tmp_path, env=env, database_url=setup.database_url) as server,
          httpx.Client(base_url=server.url) as client):
        tag_image(client, "legacy/rsa", "v1", "rsa")
        r = get(client, "legacy/rsa", "v1")
        payload, jwk = jws_verify(r.content)
        assert verify_signatures(r.content) == payload
    assert int.from_bytes(b64url(jwk["n"]), "big") == private.public_key().public_numbers().n
    metadata = setup.database_url or f"sqlite://{tmp_path / 'data' / 'metadata.db'}"
    assert query(metadata, "SELECT name FROM signing_keys") == []


def test_an_image_whose_config_is_gone_is_refused_with_the_reason(client: httpx.Client, repo: str) -> None:
    manifest, _ = tag_image(client, repo, "v1", "no-config")
    config = json.loads(manifest)["config"]["digest"]
    assert client.delete(f"/v2/{repo}/blobs/{config}").status_code == 202
    r = get(client, repo, "v1", SIGNED)
    assert r.status_code == 400 and codes(r) == ["MANIFEST_INVALID"], r.text
    assert f"its config {config} is not in the repository" in r.json()["errors"][0]["message"]
    assert get(client, repo, "v1", DOCKER_MANIFEST).content == manifest  # the image itself is still served
