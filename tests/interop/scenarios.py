"""skopeo scenarios run against cargohold, and against Distribution to prove the checks themselves right."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from .tools import OciLayout, Skopeo, assert_same_dir, assert_same_image

__all__ = ["Skopeo"]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
EMPTY_GZIP_LAYER = "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def oci_round_trip(skopeo: Skopeo, host: str, layout: OciLayout, tag: str, workdir: Path,
                   repo: str = "interop/roundtrip") -> str:
    """OCI layout -> registry -> another OCI layout; both layouts must hold the same bytes.

    Returns the manifest digest.
    """
    ref = f"docker://{host}/{repo}:{tag}"
    skopeo.copy(f"oci:{layout.path}:{tag}", ref)
    expected: str = layout.descriptor(tag)["digest"]

    raw = skopeo.inspect_raw(ref)
    assert raw == layout.blob(expected), "the registry serves other manifest bytes than were pushed"
    assert sha256(raw) == expected
    info = skopeo.inspect(ref)
    assert info["Digest"] == expected
    assert tag in info["RepoTags"]
    config = json.loads(layout.blob(layout.manifest(tag)["config"]["digest"]))
    assert info["Labels"] == config["config"].get("Labels")
    assert info["Layers"] == [layer["digest"] for layer in layout.manifest(tag)["layers"]]

    back = OciLayout(workdir / f"back-{tag}")
    skopeo.copy(ref, f"oci:{back.path}:{tag}")
    assert_same_image(layout, tag, back, tag)
    # and by digest, not just by tag
    by_digest = OciLayout(workdir / f"back-{tag}-digest")
    skopeo.copy(f"docker://{host}/{repo}@{expected}", f"oci:{by_digest.path}:{tag}")
    assert_same_image(layout, tag, by_digest, tag)
    return expected


def index_round_trip(skopeo: Skopeo, host: str, layout: OciLayout, tag: str, workdir: Path,
                     repo: str = "interop/multiarch") -> dict[str, Any]:
    """``copy --all`` of an image index in and out again; every child manifest and blob survives."""
    ref = f"docker://{host}/{repo}:{tag}"
    skopeo.copy(f"oci:{layout.path}:{tag}", ref, "--all")
    expected: str = layout.descriptor(tag)["digest"]
    raw = skopeo.inspect_raw(ref)
    assert sha256(raw) == expected
    index: dict[str, Any] = json.loads(raw)
    assert index["mediaType"] == OCI_INDEX
    for child in index["manifests"]:
        child_raw = skopeo.inspect_raw(f"docker://{host}/{repo}@{child['digest']}")
        assert sha256(child_raw) == child["digest"]
        assert len(child_raw) == child["size"]
    back = OciLayout(workdir / f"back-{tag}")
    skopeo.copy(ref, f"oci:{back.path}:{tag}", "--all")
    assert_same_image(layout, tag, back, tag)
    return index


def docker_round_trip(skopeo: Skopeo, host: str, source: Path, workdir: Path,
                      repo: str = "interop/docker", tag: str = "v2s2") -> str:
    """A docker schema 2 image (``dir:`` layout) in and out; manifest bytes and blobs survive."""
    ref = f"docker://{host}/{repo}:{tag}"
    skopeo.copy(f"dir:{source}", ref)
    manifest = (source / "manifest.json").read_bytes()
    assert json.loads(manifest)["mediaType"] == DOCKER_MANIFEST
    raw = skopeo.inspect_raw(ref)
    assert raw == manifest
    assert skopeo.inspect(ref)["Digest"] == sha256(manifest)
    back = workdir / "back-dir"
    skopeo.copy(ref, f"dir:{back}")
    assert_same_dir(source, back)
    return sha256(manifest)


def tags_and_delete(skopeo: Skopeo, host: str, layout: OciLayout, repo: str = "interop/tags") -> None:
    """Two images under three tags; ``list-tags``; ``delete`` one image; it is gone, the other stays."""
    for tag, source in (("small", "small"), ("also-small", "small"), ("base", "base")):
        skopeo.copy(f"oci:{layout.path}:{source}", f"docker://{host}/{repo}:{tag}")
    assert sorted(skopeo.list_tags(f"docker://{host}/{repo}")) == ["also-small", "base", "small"]

    small = layout.descriptor("small")["digest"]
    skopeo.delete(f"docker://{host}/{repo}:small")  # resolves the tag, then DELETEs the manifest by digest
    for ref in (f"{repo}:small", f"{repo}:also-small", f"{repo}@{small}"):
        failure = skopeo.fails("inspect", "--tls-verify=false", f"docker://{host}/{ref}")
        assert "manifest unknown" in failure.stderr.lower(), failure.stderr
    assert skopeo.list_tags(f"docker://{host}/{repo}") == ["base"]
    assert skopeo.inspect(f"docker://{host}/{repo}:base")["Digest"] == layout.descriptor("base")["digest"]


def schema1_payload(raw: bytes) -> bytes:
    """The signed payload of a schema 1 JWS manifest: the bytes its digest is taken over."""
    document = json.loads(raw)
    protected = document["signatures"][0]["protected"]
    header = json.loads(base64.urlsafe_b64decode(protected + "=" * (-len(protected) % 4)))
    tail = header["formatTail"]
    return raw[: header["formatLength"]] + base64.urlsafe_b64decode(tail + "=" * (-len(tail) % 4))


def schema1_push(skopeo: Skopeo, host: str, layout: OciLayout, tag: str,
                 repo: str = "interop/schema1") -> tuple[bytes, str]:
    """skopeo converts to a signed schema 1 manifest and pushes it; the registry keeps it as signed."""
    ref = f"docker://{host}/{repo}:{tag}"
    skopeo.copy(f"oci:{layout.path}:{tag}", ref, "--format", "v2s1")
    raw = skopeo.inspect_raw(ref)
    document = json.loads(raw)
    assert document["schemaVersion"] == 1
    assert document["signatures"], "the registry dropped the signatures"
    assert document["name"] == repo and document["tag"] == tag
    digest = sha256(schema1_payload(raw))
    assert skopeo.inspect(ref)["Digest"] == digest
    # schema 1 has one fsLayer per history entry; empty ones point at the gzipped empty tar
    assert {layer["blobSum"] for layer in document["fsLayers"]} - {EMPTY_GZIP_LAYER} == {
        layer["digest"] for layer in layout.manifest(tag)["layers"]
    }
    return raw, digest
