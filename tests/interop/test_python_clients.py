"""The Python registry libraries python-dxf and oras-py against a real cargohold."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from tests.support.requirements import require_module
from tests.support.servers import CargoholdServer

from .tools import request_log

dxf = require_module("dxf", "python-dxf")
oras_client = require_module("oras.client", "oras")
oras_oci = require_module("oras.oci", "oras")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


# python-dxf


@pytest.mark.scaled
def test_dxf_blobs(fresh_registry: CargoholdServer, tmp_path: Path) -> None:
    client = dxf.DXF(fresh_registry.host, "interop/dxf", insecure=True)
    payload = os.urandom(300_000)
    path = tmp_path / "blob.bin"
    path.write_bytes(payload)

    from_file = client.push_blob(str(path))  # POST, then one monolithic PUT
    assert from_file == _digest(payload)
    streamed = b"streamed by an iterator " * 4000
    from_iter = client.push_blob(data=iter([streamed[:40_000], streamed[40_000:]]), digest=_digest(streamed))
    assert from_iter == _digest(streamed)

    assert client.blob_size(from_file) == len(payload)
    assert client.blob_size(from_iter) == len(streamed)
    assert b"".join(client.pull_blob(from_file)) == payload
    assert b"".join(client.pull_blob(from_iter)) == streamed
    # python-dxf checks the digest of what it pulls while it reads
    assert b"".join(client.pull_blob(from_iter, size=True)[0]) == streamed
    fresh_registry.assert_storage_consistent()

    client.del_blob(from_iter)
    with pytest.raises(Exception, match="404"):
        client.blob_size(from_iter)
    assert client.blob_size(from_file) == len(payload)
    fresh_registry.assert_storage_consistent()


def test_dxf_aliases_and_repositories(fresh_registry: CargoholdServer) -> None:
    client = dxf.DXF(fresh_registry.host, "interop/dxf-alias", insecure=True)
    first, second = b"config-ish blob", os.urandom(50_000)
    digests = [client.push_blob(data=iter([data]), digest=_digest(data)) for data in (first, second)]

    manifest = client.set_alias("v1", *digests)  # a docker schema 2 manifest, PUT by tag
    client.set_alias("v2", digests[1])
    assert sorted(client.list_aliases()) == ["v1", "v2"]
    assert client.get_alias("v1") == digests
    assert client.get_manifest("v1") == manifest
    dxf.DXF(fresh_registry.host, "interop/other", insecure=True).push_blob(data=iter([b"x"]), digest=_digest(b"x"))
    repos = dxf.DXF(fresh_registry.host, "", insecure=True).list_repos()
    assert "interop/dxf-alias" in repos

    assert client.del_alias("v1") == digests  # resolves v1 to its digest, DELETEs the manifest
    assert client.list_aliases() == ["v2"]
    with pytest.raises(Exception, match="404"):
        client.get_alias("v1")
    fresh_registry.assert_storage_consistent()


# oras-py


def _oras_files(tmp_path: Path) -> dict[str, bytes]:
    files = {"artifact.bin": os.urandom(700_000), "notes.txt": b"oras-py interop\n"}
    source = tmp_path / "source"
    source.mkdir()
    for name, data in files.items():
        (source / name).write_bytes(data)
    return files


def _push_pull(fresh_registry: CargoholdServer, tmp_path: Path, tag: str, **push: object) -> None:
    files = _oras_files(tmp_path)
    client = oras_client.OrasClient(hostname=fresh_registry.host, insecure=True)
    target = f"{fresh_registry.host}/interop/oras:{tag}"
    cwd = os.getcwd()
    os.chdir(tmp_path / "source")  # oras-py names layers by the paths it was given
    try:
        response = client.push(files=sorted(files), target=target, manifest_annotations={"test": tag}, **push)
    finally:
        os.chdir(cwd)
    assert response.status_code == 201
    fresh_registry.assert_storage_consistent()

    pulled = client.pull(target=target, outdir=str(tmp_path / "out"))
    assert sorted(Path(p).name for p in pulled) == sorted(files)
    for name, data in files.items():
        assert (tmp_path / "out" / name).read_bytes() == data
    manifest = client.get_manifest(target)
    assert manifest["annotations"]["test"] == tag


def test_oras_push_pull_monolithic(fresh_registry: CargoholdServer, tmp_path: Path) -> None:
    _push_pull(fresh_registry, tmp_path, "mono")
    patches = [r for r in request_log(fresh_registry) if r["method"] == "PATCH"]
    assert patches == []


@pytest.mark.scaled
def test_oras_push_pull_chunked(fresh_registry: CargoholdServer, tmp_path: Path) -> None:
    """``do_chunked`` sends POST, one PATCH per chunk (with Content-Range), then PUT ?digest=."""
    _push_pull(fresh_registry, tmp_path, "chunked", do_chunked=True, chunk_size=64 * 1024)
    patches = [r for r in request_log(fresh_registry) if r["method"] == "PATCH"]
    assert len(patches) >= 700_000 // (64 * 1024), f"expected many PATCHes, saw {len(patches)}"
    assert all(r["status"] == 202 for r in patches)


def test_oras_tags_and_delete(fresh_registry: CargoholdServer, tmp_path: Path) -> None:
    client = oras_client.OrasClient(hostname=fresh_registry.host, insecure=True)
    (tmp_path / "a.txt").write_text("one\n")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for tag in ("v1", "v2", "v3"):
            (tmp_path / "a.txt").write_text(f"content for {tag}\n")
            client.push(files=["a.txt"], target=f"{fresh_registry.host}/interop/oras-tags:{tag}")
    finally:
        os.chdir(cwd)
    repo = f"{fresh_registry.host}/interop/oras-tags"
    assert client.get_tags(repo) == ["v1", "v2", "v3"]
    assert client.delete_tag(repo, "v2")  # HEAD the tag for its digest, DELETE the manifest by digest
    assert client.get_tags(repo) == ["v1", "v3"]
    fresh_registry.assert_storage_consistent()


def test_oras_artifact_with_subject_is_a_referrer(fresh_registry: CargoholdServer, tmp_path: Path) -> None:
    """oras-py pushes an artifact whose ``subject`` is an earlier artifact; the referrers API lists it."""
    client = oras_client.OrasClient(hostname=fresh_registry.host, insecure=True)
    repo = f"{fresh_registry.host}/interop/oras-refs"
    (tmp_path / "subject.txt").write_text("the subject\n")
    (tmp_path / "sbom.json").write_text('{"sbom": true}\n')
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        client.push(files=["subject.txt"], target=f"{repo}:v1")
        head = httpx.head(f"{fresh_registry.url}/v2/interop/oras-refs/manifests/v1",
                          headers={"accept": OCI_MANIFEST})
        subject = oras_oci.Subject(head.headers["content-type"], head.headers["docker-content-digest"],
                                   int(head.headers["content-length"]))
        client.push(files=["sbom.json"], target=f"{repo}:sbom", subject=subject,
                    manifest_annotations={"org.example.kind": "sbom"})
    finally:
        os.chdir(cwd)
    fresh_registry.assert_storage_consistent()

    sbom = httpx.head(f"{fresh_registry.url}/v2/interop/oras-refs/manifests/sbom",
                      headers={"accept": subject.mediaType})
    response = httpx.get(f"{fresh_registry.url}/v2/interop/oras-refs/referrers/{subject.digest}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.oci.image.index.v1+json"
    [descriptor] = response.json()["manifests"]
    assert descriptor["digest"] == sbom.headers["docker-content-digest"]
    assert descriptor["size"] == int(sbom.headers["content-length"])
    # no artifactType in the manifest: the spec says to report the config's media type instead
    assert descriptor["artifactType"] == client.get_manifest(f"{repo}:sbom")["config"]["mediaType"]
    assert descriptor["annotations"] == {"org.example.kind": "sbom"}


def test_paginated_listings(fresh_registry: CargoholdServer) -> None:
    """python-dxf and oras-py page through tags and the catalog by following the ``Link`` header."""
    host = fresh_registry.host
    client = dxf.DXF(host, "interop/paged", insecure=True)
    digest = client.push_blob(data=iter([b"tiny"]), digest=_digest(b"tiny"))
    tags = [f"t{i:02d}" for i in range(12)]
    for tag in tags:
        client.set_alias(tag, digest)
    repos = ["interop/paged"]
    for i in range(4):
        other = dxf.DXF(host, f"interop/repo{i}", insecure=True)
        other.set_alias("v1", other.push_blob(data=iter([b"tiny"]), digest=_digest(b"tiny")))
        repos.append(f"interop/repo{i}")

    assert client.list_aliases(batch_size=5) == tags
    assert dxf.DXF(host, "", insecure=True).list_repos(batch_size=2) == sorted(repos)
    oras = oras_client.OrasClient(hostname=host, insecure=True)
    assert oras.get_tags(f"{host}/interop/paged", N=7) == tags[:7]
    assert oras.get_tags(f"{host}/interop/paged") == tags
    pages = [r for r in request_log(fresh_registry) if r["path"] == "/v2/interop/paged/tags/list"]
    assert len(pages) >= 3 + 1 + 1, "the clients did not page"  # dxf: 5+5+2; oras: 7; oras: all
    fresh_registry.assert_storage_consistent()
