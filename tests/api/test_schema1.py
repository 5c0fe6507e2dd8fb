"""Signed Docker schema 1 manifests: the JWS is verified, and name and tag must match the URL."""

from __future__ import annotations

import json
from typing import Any

import httpx

from cargohold.formats.schema1 import generate_key, sign

from .helpers import OCI_MANIFEST, codes, push_blob, put_manifest, sha256

SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"


def schema1(client: httpx.Client, repo: str, tag: str, *, name: str | None = None) -> dict[str, Any]:
    layers = [push_blob(client, repo, f"{repo} schema1 layer {i}".encode()) for i in range(2)]
    return {
        "schemaVersion": 1,
        "name": name or repo,
        "tag": tag,
        "architecture": "amd64",
        "fsLayers": [{"blobSum": d} for d in layers],
        "history": [{"v1Compatibility": json.dumps({"id": f"{i:064x}"})} for i in range(2)],
    }


def payload_digest(signed: bytes) -> str:
    body = json.loads(signed)
    body.pop("signatures")
    return sha256(json.dumps(body, indent=3).encode())


def test_signed_schema1_round_trip(client: httpx.Client, repo: str) -> None:
    signed = sign(schema1(client, repo, "old"), generate_key())
    r = put_manifest(client, repo, "old", signed, SIGNED)
    assert r.status_code == 201, r.text
    digest = r.headers["docker-content-digest"]
    assert digest == payload_digest(signed)  # the digest docker and skopeo compute: of the payload
    got = client.get(f"/v2/{repo}/manifests/old", headers={"Accept": SIGNED})
    assert got.content == signed and got.headers["content-type"] == SIGNED
    assert client.get(f"/v2/{repo}/manifests/{digest}").content == signed


def test_schema1_is_answered_with_a_deprecation_warning(client: httpx.Client, repo: str) -> None:
    signed = sign(schema1(client, repo, "old"), generate_key())
    r = put_manifest(client, repo, "old", signed, SIGNED)
    assert r.status_code == 201, r.text
    expected = '299 - "Docker schema 1 manifests are deprecated; convert the image to Docker schema 2 or OCI"'
    assert r.headers.get_list("warning") == [expected]
    for method in ("GET", "HEAD"):
        got = client.request(method, f"/v2/{repo}/manifests/old", headers={"Accept": SIGNED})
        assert got.status_code == 200 and got.headers.get_list("warning") == [expected], method
    # other manifests are not warned of
    config = push_blob(client, repo, b"{}")
    oci = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
                      "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2}})
    r = put_manifest(client, repo, "new", oci.encode(), OCI_MANIFEST)
    assert r.status_code == 201 and "warning" not in r.headers
    assert "warning" not in client.get(f"/v2/{repo}/manifests/new").headers


def test_tampered_signature_is_unverified(client: httpx.Client, repo: str) -> None:
    signed = sign(schema1(client, repo, "t"), generate_key())
    tampered = signed.replace(b'"architecture": "amd64"', b'"architecture": "arm64"')
    assert tampered != signed
    r = put_manifest(client, repo, "t", tampered, SIGNED)
    assert r.status_code == 400 and codes(r) == ["MANIFEST_UNVERIFIED"]
    body = json.loads(signed)
    body["signatures"][0]["signature"] = body["signatures"][0]["signature"][::-1]
    r = put_manifest(client, repo, "t", json.dumps(body, indent=3).encode(), SIGNED)
    assert r.status_code == 400 and codes(r) in (["MANIFEST_UNVERIFIED"], ["MANIFEST_INVALID"])
    assert client.get(f"/v2/{repo}/manifests/t").status_code == 404


def test_unsigned_when_signature_required(client: httpx.Client, repo: str) -> None:
    raw = json.dumps(schema1(client, repo, "u"), indent=3).encode()
    r = put_manifest(client, repo, "u", raw, SIGNED)
    assert r.status_code == 400 and codes(r) == ["MANIFEST_UNVERIFIED"]


def test_name_and_tag_must_match_the_url(client: httpx.Client, repo: str) -> None:
    signed = sign(schema1(client, repo, "v1", name="some/other"), generate_key())
    r = put_manifest(client, repo, "v1", signed, SIGNED)
    assert r.status_code == 400 and codes(r) == ["NAME_INVALID"]
    signed = sign(schema1(client, repo, "v1"), generate_key())
    r = put_manifest(client, repo, "v2", signed, SIGNED)
    assert r.status_code == 400 and codes(r) == ["TAG_INVALID"]


def test_missing_layers_are_reported(client: httpx.Client, repo: str) -> None:
    body = schema1(client, repo, "m")
    body["fsLayers"].append({"blobSum": sha256(b"never pushed")})
    body["history"].append({"v1Compatibility": "{}"})
    r = put_manifest(client, repo, "m", sign(body, generate_key()), SIGNED)
    assert r.status_code == 400 and codes(r) == ["MANIFEST_BLOB_UNKNOWN"]
    assert r.json()["errors"][0]["detail"] == {"digest": sha256(b"never pushed")}
