"""Manifests of every media type: push, pull, negotiate, verify references, delete; and bad input."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest

from tests.support.servers import CargoholdServer

from .helpers import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    codes,
    descriptor,
    image_manifest,
    push_blob,
    put_manifest,
    sha256,
)


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_image_manifest_round_trip(client: httpx.Client, repo: str, media_type: str) -> None:
    raw = image_manifest(client, repo, media_type=media_type)
    r = put_manifest(client, repo, "v1", raw, media_type)
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == sha256(raw)
    assert r.headers["location"] == f"/v2/{repo}/manifests/{sha256(raw)}"
    for reference in ("v1", sha256(raw)):
        got = client.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": media_type})
        assert got.status_code == 200
        assert got.content == raw  # the bytes exactly as pushed
        assert got.headers["content-type"] == media_type
        assert got.headers["docker-content-digest"] == sha256(raw)
        head = client.head(f"/v2/{repo}/manifests/{reference}", headers={"Accept": media_type})
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(raw))


@pytest.mark.parametrize(("index_type", "child_type"), [(OCI_INDEX, OCI_MANIFEST), (DOCKER_LIST, DOCKER_MANIFEST)])
def test_index_round_trip(client: httpx.Client, repo: str, index_type: str, child_type: str) -> None:
    children = []
    for arch in ("amd64", "arm64"):
        raw = image_manifest(client, repo, seed=arch, media_type=child_type)
        assert put_manifest(client, repo, sha256(raw), raw, child_type).status_code == 201
        children.append(descriptor(child_type, raw, platform={"architecture": arch, "os": "linux"}))
    index = json.dumps({"schemaVersion": 2, "mediaType": index_type, "manifests": children}).encode()
    r = put_manifest(client, repo, "multi", index, index_type)
    assert r.status_code == 201, r.text
    got = client.get(f"/v2/{repo}/manifests/multi", headers={"Accept": f"{child_type}, {index_type}"})
    assert got.content == index and got.headers["content-type"] == index_type


def _push_list(client: httpx.Client, repo: str, index_type: str, child_type: str, arches: list[str]) -> bytes:
    children = []
    for arch in arches:
        raw = image_manifest(client, repo, seed=arch, media_type=child_type)
        assert put_manifest(client, repo, sha256(raw), raw, child_type).status_code == 201
        children.append(descriptor(child_type, raw, platform={"architecture": arch, "os": "linux"}))
    index = json.dumps({"schemaVersion": 2, "mediaType": index_type, "manifests": children}).encode()
    assert put_manifest(client, repo, "multi", index, index_type).status_code == 201
    return index


def test_client_without_manifest_lists_gets_the_amd64_image_by_tag(client: httpx.Client, repo: str) -> None:
    """Distribution's answers (checked against it in tests/interop/test_distribution_parity.py)."""
    listing = _push_list(client, repo, DOCKER_LIST, DOCKER_MANIFEST, ["arm64", "amd64"])
    amd64 = json.loads(listing)["manifests"][1]
    got = client.get(f"/v2/{repo}/manifests/multi", headers={"Accept": DOCKER_MANIFEST})
    assert got.status_code == 200 and got.headers["content-type"] == DOCKER_MANIFEST
    assert got.headers["docker-content-digest"] == amd64["digest"] == sha256(got.content)
    head = client.head(f"/v2/{repo}/manifests/multi", headers={"Accept": DOCKER_MANIFEST})
    assert head.headers["docker-content-digest"] == amd64["digest"]
    # by digest: the list itself, whatever the Accept header
    by_digest = client.get(f"/v2/{repo}/manifests/{sha256(listing)}", headers={"Accept": DOCKER_MANIFEST})
    assert by_digest.content == listing and by_digest.headers["content-type"] == DOCKER_LIST
    # the amd64 image is of a type the client does not take: nothing to give
    r = client.get(f"/v2/{repo}/manifests/multi", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 404 and codes(r) == ["MANIFEST_UNKNOWN"]


def test_manifest_list_without_amd64_and_oci_index_are_not_replaced(client: httpx.Client, repo: str) -> None:
    _push_list(client, repo, DOCKER_LIST, DOCKER_MANIFEST, ["arm64", "s390x"])
    r = client.get(f"/v2/{repo}/manifests/multi", headers={"Accept": DOCKER_MANIFEST})
    assert r.status_code == 404 and codes(r) == ["MANIFEST_UNKNOWN"]
    other = f"{repo}-oci"
    index = _push_list(client, other, OCI_INDEX, OCI_MANIFEST, ["amd64"])
    for reference in ("multi", sha256(index)):
        r = client.get(f"/v2/{other}/manifests/{reference}", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 404 and codes(r) == ["MANIFEST_UNKNOWN"], reference


def test_index_with_missing_children_reports_all(client: httpx.Client, repo: str) -> None:
    missing = [descriptor(OCI_MANIFEST, f"nothing {i}".encode()) for i in range(3)]
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": missing}).encode()
    r = put_manifest(client, repo, "broken", index, OCI_INDEX)
    assert r.status_code == 400 and codes(r) == ["MANIFEST_BLOB_UNKNOWN"] * 3
    reported = {e["detail"]["digest"] for e in r.json()["errors"]}
    assert reported == {d["digest"] for d in missing}


@pytest.mark.parametrize("kind", ["image", "index"])
def test_refused_manifest_creates_no_repository(client: httpx.Client, repo: str, kind: str) -> None:
    if kind == "image":
        raw, media_type = image_manifest(client, repo, layers=2, push=False), OCI_MANIFEST
    else:
        children = [descriptor(OCI_MANIFEST, b"nowhere")]
        raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}).encode()
        media_type = OCI_INDEX
    r = put_manifest(client, repo, "v1", raw, media_type)
    assert r.status_code == 400 and set(codes(r)) == {"MANIFEST_BLOB_UNKNOWN"}
    assert repo not in client.get("/v2/_catalog").json()["repositories"]
    tags = client.get(f"/v2/{repo}/tags/list")
    assert tags.status_code == 404 and codes(tags) == ["NAME_UNKNOWN"]


def test_manifest_with_missing_blobs_reports_all(client: httpx.Client, repo: str) -> None:
    raw = image_manifest(client, repo, layers=3, push=False)
    push_blob(client, repo, b"unrelated")
    r = put_manifest(client, repo, "v1", raw, OCI_MANIFEST)
    # one error per missing blob, each naming its digest: config and three layers
    assert r.status_code == 400 and codes(r) == ["MANIFEST_BLOB_UNKNOWN"] * 4
    expected = {d["digest"] for d in [json.loads(raw)["config"], *json.loads(raw)["layers"]]}
    assert {e["detail"]["digest"] for e in r.json()["errors"]} == expected
    assert client.get(f"/v2/{repo}/manifests/v1").status_code == 404


def test_blobs_must_be_in_this_repository(client: httpx.Client, repo: str) -> None:
    raw = image_manifest(client, f"{repo}/elsewhere")
    r = put_manifest(client, f"{repo}/here", "v1", raw, OCI_MANIFEST)
    assert r.status_code == 400 and set(codes(r)) == {"MANIFEST_BLOB_UNKNOWN"}


def test_non_distributable_layers_may_be_foreign(client: httpx.Client, repo: str) -> None:
    config = push_blob(client, repo, b'{"os":"windows"}')
    foreign = {
        "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "digest": sha256(b"windows base layer"),
        "size": 18,
        "urls": ["https://example.invalid/layer"],
    }
    raw = json.dumps({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config, "size": 16},
        "layers": [foreign],
    }).encode()
    assert put_manifest(client, repo, "win", raw, DOCKER_MANIFEST).status_code == 201


def test_artifact_with_empty_config_and_referrers(client: httpx.Client, repo: str) -> None:
    subject_raw = image_manifest(client, repo)
    subject = sha256(subject_raw)
    push_blob(client, repo, b"{}")
    push_blob(client, repo, b"signature bytes")
    push_blob(client, repo, b"sbom bytes")

    def artifact(kind: str, blob: bytes, annotations: dict[str, str]) -> bytes:
        return json.dumps({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": kind,
            "config": descriptor(OCI_EMPTY, b"{}"),
            "layers": [descriptor("application/octet-stream", blob)],
            "subject": descriptor(OCI_MANIFEST, subject_raw),
            "annotations": annotations,
        }).encode()

    signature = artifact("application/vnd.example.signature", b"signature bytes", {"kind": "sig"})
    sbom = artifact("application/spdx+json", b"sbom bytes", {"kind": "sbom"})
    # referrers are indexed even before the subject exists
    for raw in (signature, sbom):
        r = put_manifest(client, repo, sha256(raw), raw, OCI_MANIFEST)
        assert r.status_code == 201, r.text
        assert r.headers["oci-subject"] == subject
    assert put_manifest(client, repo, "subject", subject_raw, OCI_MANIFEST).status_code == 201

    r = client.get(f"/v2/{repo}/referrers/{subject}")
    assert r.status_code == 200 and r.headers["content-type"] == OCI_INDEX
    index = r.json()
    assert index["mediaType"] == OCI_INDEX and index["schemaVersion"] == 2
    found = {m["digest"]: m for m in index["manifests"]}
    assert set(found) == {sha256(signature), sha256(sbom)}
    assert found[sha256(sbom)] == {
        "mediaType": OCI_MANIFEST,
        "digest": sha256(sbom),
        "size": len(sbom),
        "artifactType": "application/spdx+json",
        "annotations": {"kind": "sbom"},
    }
    assert "oci-filters-applied" not in r.headers

    r = client.get(f"/v2/{repo}/referrers/{subject}", params={"artifactType": "application/spdx+json"})
    assert r.headers["oci-filters-applied"] == "artifactType"
    assert [m["digest"] for m in r.json()["manifests"]] == [sha256(sbom)]

    r = client.get(f"/v2/{repo}/referrers/{sha256(b'no referrers')}")
    assert r.status_code == 200 and r.json()["manifests"] == []
    r = client.get(f"/v2/no/such/repository/referrers/{subject}")
    assert r.status_code == 200 and r.json()["manifests"] == []
    r = client.get(f"/v2/{repo}/referrers/notadigest")
    assert r.status_code == 400 and codes(r) == ["DIGEST_INVALID"]

    # deleting a referrer removes it from the list
    assert client.delete(f"/v2/{repo}/manifests/{sha256(signature)}").status_code == 202
    r = client.get(f"/v2/{repo}/referrers/{subject}")
    assert [m["digest"] for m in r.json()["manifests"]] == [sha256(sbom)]


def test_image_referrer_artifact_type_falls_back_to_config(client: httpx.Client, repo: str) -> None:
    subject_raw = image_manifest(client, repo, seed="s")
    put_manifest(client, repo, "s", subject_raw, OCI_MANIFEST)
    config = b'{"custom": true}'
    push_blob(client, repo, config)
    raw = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.example.config+json", config),
        "layers": [],
        "subject": descriptor(OCI_MANIFEST, subject_raw),
    }).encode()
    assert put_manifest(client, repo, sha256(raw), raw, OCI_MANIFEST).status_code == 201
    r = client.get(f"/v2/{repo}/referrers/{sha256(subject_raw)}")
    assert r.json()["manifests"][0]["artifactType"] == "application/vnd.example.config+json"


def test_content_negotiation(client: httpx.Client, repo: str) -> None:
    raw = image_manifest(client, repo)
    put_manifest(client, repo, "v1", raw, OCI_MANIFEST)
    url = f"/v2/{repo}/manifests/v1"
    assert client.get(url).status_code == 200
    assert client.get(url, headers={"Accept": "*/*"}).status_code == 200
    r = client.get(url, headers={"Accept": DOCKER_MANIFEST})
    assert r.status_code == 404 and codes(r) == ["MANIFEST_UNKNOWN"]
    multi = httpx.Headers([("Accept", DOCKER_MANIFEST), ("Accept", f"{OCI_MANIFEST}; q=0.5")])
    assert client.get(url, headers=multi).status_code == 200


def test_manifest_digest_in_url_must_match(client: httpx.Client, repo: str) -> None:
    raw = image_manifest(client, repo)
    r = put_manifest(client, repo, sha256(b"something else"), raw, OCI_MANIFEST)
    assert r.status_code == 400 and codes(r) == ["DIGEST_INVALID"]
    r = put_manifest(client, repo, "sha256:short", raw, OCI_MANIFEST)
    assert r.status_code == 400 and codes(r) == ["DIGEST_INVALID"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"not json", OCI_MANIFEST),
        (b"[1, 2]", OCI_MANIFEST),
        (b'{"schemaVersion": 2}', OCI_MANIFEST),
        (b'{"schemaVersion": 3, "mediaType": "%s", "config": {}, "layers": []}' % OCI_MANIFEST.encode(), OCI_MANIFEST),
        (b'{"schemaVersion": 2, "mediaType": "application/x-unknown", "layers": []}', "application/x-unknown"),
        (json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode(), OCI_MANIFEST),
        (json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {
            "mediaType": "x", "digest": "sha256:nope", "size": 1}, "layers": []}).encode(), OCI_MANIFEST),
        (json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {
            "mediaType": "x", "digest": sha256(b""), "size": -1}, "layers": []}).encode(), OCI_MANIFEST),
        (json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {
            "mediaType": "x", "digest": sha256(b""), "size": True}, "layers": []}).encode(), OCI_MANIFEST),
        (json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor("x", b""),
                     "layers": "nope"}).encode(), OCI_MANIFEST),
    ],
    ids=["not-json", "not-object", "no-fields", "schema-3", "unknown-type", "type-mismatch", "bad-digest",
         "negative-size", "bool-size", "layers-not-list"],
)
def test_malformed_manifests(client: httpx.Client, repo: str, body: bytes, content_type: str) -> None:
    r = put_manifest(client, repo, "bad", body, content_type)
    assert r.status_code == 400 and codes(r) == ["MANIFEST_INVALID"], r.text
    assert client.get(f"/v2/{repo}/manifests/bad").status_code == 404


def test_oversized_manifest(client: httpx.Client, repo: str) -> None:
    raw = image_manifest(client, repo, annotations={"pad": "x" * (4 * 1024 * 1024)})
    r = put_manifest(client, repo, "big", raw, OCI_MANIFEST)
    assert r.status_code == 413 and codes(r) == ["SIZE_INVALID"]

    def chunks() -> object:
        yield raw[:1000]
        yield raw[1000:]

    r = client.put(f"/v2/{repo}/manifests/big", content=chunks(), headers={"Content-Type": OCI_MANIFEST})  # type: ignore[arg-type]
    assert r.status_code == 413 and codes(r) == ["SIZE_INVALID"]


def test_invalid_tag(client: httpx.Client, repo: str) -> None:
    raw = image_manifest(client, repo)
    for tag in ("-dash", ".dot", "a" * 129, "t%21"):
        r = put_manifest(client, repo, tag, raw, OCI_MANIFEST)
        assert r.status_code == 400 and codes(r) == ["TAG_INVALID"], tag
    assert put_manifest(client, repo, "_ok.Tag-1", raw, OCI_MANIFEST).status_code == 201
    assert put_manifest(client, repo, "a" * 128, raw, OCI_MANIFEST).status_code == 201


def test_unknown_manifest_and_repository(client: httpx.Client, repo: str) -> None:
    r = client.get("/v2/nobody/here/manifests/latest")
    assert r.status_code == 404 and codes(r) == ["NAME_UNKNOWN"]
    put_manifest(client, repo, "v1", image_manifest(client, repo), OCI_MANIFEST)
    r = client.get(f"/v2/{repo}/manifests/v2")
    assert r.status_code == 404 and codes(r) == ["MANIFEST_UNKNOWN"]
    r = client.get(f"/v2/{repo}/manifests/{sha256(b'none')}")
    assert r.status_code == 404 and codes(r) == ["MANIFEST_UNKNOWN"]


def test_retag_and_delete_tag(client: httpx.Client, repo: str) -> None:
    first = image_manifest(client, repo, seed="1")
    second = image_manifest(client, repo, seed="2")
    put_manifest(client, repo, "latest", first, OCI_MANIFEST)
    put_manifest(client, repo, "latest", second, OCI_MANIFEST)
    put_manifest(client, repo, "keep", second, OCI_MANIFEST)
    assert client.get(f"/v2/{repo}/manifests/latest").content == second
    assert client.get(f"/v2/{repo}/manifests/{sha256(first)}").content == first
    assert client.delete(f"/v2/{repo}/manifests/latest").status_code == 202
    assert client.get(f"/v2/{repo}/manifests/latest").status_code == 404
    assert client.get(f"/v2/{repo}/manifests/keep").status_code == 200
    r = client.delete(f"/v2/{repo}/manifests/latest")
    assert r.status_code == 404 and codes(r) == ["MANIFEST_UNKNOWN"]


def test_delete_by_digest_removes_its_tags(client: httpx.Client, repo: str) -> None:
    raw = image_manifest(client, repo)
    for tag in ("a", "b"):
        put_manifest(client, repo, tag, raw, OCI_MANIFEST)
    assert client.delete(f"/v2/{repo}/manifests/{sha256(raw)}").status_code == 202
    for reference in ("a", "b", sha256(raw)):
        assert client.get(f"/v2/{repo}/manifests/{reference}").status_code == 404
    assert client.get(f"/v2/{repo}/tags/list").json()["tags"] == []


def test_method_not_allowed(client: httpx.Client, repo: str) -> None:
    r = client.post(f"/v2/{repo}/manifests/latest")
    assert r.status_code == 405 and codes(r) == ["UNSUPPORTED"]
    assert r.headers["allow"] == "DELETE, GET, HEAD, PUT"


def test_storage_stays_consistent(registry: CargoholdServer) -> None:
    registry.assert_storage_consistent()


def push_tags(client: httpx.Client, repo: str, raw: bytes, tags: list[str], reference: str = "") -> httpx.Response:
    """PUT by digest with one ``tag`` parameter per tag."""
    return client.put(
        f"/v2/{repo}/manifests/{reference or sha256(raw)}",
        params=[("tag", tag) for tag in tags],
        content=raw,
        headers={"Content-Type": OCI_MANIFEST},
    )


def test_push_by_digest_with_several_tags(client: httpx.Client, repo: str) -> None:
    old, new = image_manifest(client, repo, seed="old"), image_manifest(client, repo, seed="new")
    for tag in ("v1", "stable"):
        put_manifest(client, repo, tag, old, OCI_MANIFEST)
    r = push_tags(client, repo, new, ["v2", "stable", "latest", "v2"])
    assert r.status_code == 201, r.text
    assert r.headers.get_list("oci-tag") == ["v2", "stable", "latest"]  # one header per tag, duplicates once
    assert r.headers["docker-content-digest"] == sha256(new)
    assert r.headers["location"] == f"/v2/{repo}/manifests/{sha256(new)}"
    for tag in ("v2", "stable", "latest"):
        assert client.get(f"/v2/{repo}/manifests/{tag}").content == new, tag
    assert client.get(f"/v2/{repo}/manifests/v1").content == old
    assert client.get(f"/v2/{repo}/tags/list").json()["tags"] == ["latest", "stable", "v1", "v2"]
    # without tag parameters a push by digest tags nothing and says so
    untagged = image_manifest(client, repo, seed="untagged")
    r = push_tags(client, repo, untagged, [])
    assert r.status_code == 201 and "oci-tag" not in r.headers


def test_one_bad_tag_refuses_the_whole_push(client: httpx.Client, repo: str) -> None:
    old, new = image_manifest(client, repo, seed="old"), image_manifest(client, repo, seed="new")
    put_manifest(client, repo, "stable", old, OCI_MANIFEST)
    for bad in ("-dash", ".dot", "a" * 129, "has space", "t!", "", "a:b"):
        r = push_tags(client, repo, new, ["stable", bad, "latest"])
        assert r.status_code == 400 and codes(r) == ["TAG_INVALID"], bad
        assert r.json()["errors"][0]["detail"] == {"tags": [bad]}
    # nothing of it was stored: the manifest, the new tag, the moved tag
    assert client.get(f"/v2/{repo}/manifests/{sha256(new)}").status_code == 404
    assert client.get(f"/v2/{repo}/manifests/stable").content == old
    assert client.get(f"/v2/{repo}/tags/list").json()["tags"] == ["stable"]


def test_tag_parameters_need_a_push_by_digest(client: httpx.Client, repo: str) -> None:
    raw = image_manifest(client, repo)
    r = push_tags(client, repo, raw, ["other"], reference="v1")
    assert r.status_code == 400 and codes(r) == ["TAG_INVALID"]
    assert client.get(f"/v2/{repo}/tags/list").json()["tags"] == []
    assert client.get(f"/v2/{repo}/manifests/{sha256(raw)}").status_code == 404


def test_too_many_tags_in_one_push(client: httpx.Client, repo: str) -> None:
    raw = image_manifest(client, repo)
    r = push_tags(client, repo, raw, [f"t{i}" for i in range(51)])
    assert r.status_code == 414 and codes(r) == ["TAG_INVALID"]
    assert client.get(f"/v2/{repo}/manifests/{sha256(raw)}").status_code == 404
    r = push_tags(client, repo, raw, [f"t{i}" for i in range(50)])
    assert r.status_code == 201 and len(r.headers.get_list("oci-tag")) == 50


def test_sha512_manifest_tagged_in_its_push(client: httpx.Client, repo: str) -> None:
    raw = image_manifest(client, repo)
    digest = "sha512:" + hashlib.sha512(raw).hexdigest()
    r = push_tags(client, repo, raw, ["v1"], reference=digest)
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == digest and r.headers.get_list("oci-tag") == ["v1"]
    got = client.get(f"/v2/{repo}/manifests/v1")
    assert got.content == raw and got.headers["docker-content-digest"] == digest
    # the digest must still be the manifest's: a wrong one stores and tags nothing
    other = image_manifest(client, repo, seed="other")
    r = push_tags(client, repo, other, ["v2"], reference=digest)
    assert r.status_code == 400 and codes(r) == ["DIGEST_INVALID"]
    assert client.get(f"/v2/{repo}/manifests/v2").status_code == 404
