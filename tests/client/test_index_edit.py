"""``cargohold index create|add|remove``: indexes over images already in a registry, no layer moved."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cargohold.client import Reference, RegistryClient
from cargohold.digest import Digest
from cargohold.formats import MediaType, Platform
from tests.interop.tools import Clients
from tests.support.requirements import requires_tool

from .cli_support import isolated, run  # noqa: F401 - isolated is an autouse fixture
from .conftest import RunningRegistry
from .images import BuiltImage, build_image, build_index
from .server_log import assert_no_layer_moved, served_during
from .test_mutate import BIG, document, layers_of, put_image, refused

AMD64, ARM64 = Platform("amd64", "linux"), Platform("arm64", "linux", "v8")


def with_config(image: BuiltImage, extra: dict[str, Any]) -> BuiltImage:
    """``image`` with ``extra`` keys in its config (a new config blob and manifest)."""
    manifest = json.loads(image.manifest)
    old = Digest.parse(manifest["config"]["digest"])
    raw = json.dumps({**json.loads(image.blobs[old]), **extra}).encode()
    blobs = {d: b for d, b in image.blobs.items() if d != old} | {Digest.of(raw): raw}
    manifest["config"] = {**manifest["config"], "digest": str(Digest.of(raw)), "size": len(raw)}
    data = json.dumps(manifest).encode()
    return BuiltImage(data, Digest.of(data), image.media_type, blobs)


def indexed(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, "index", *argv, "--json")
    assert code == 0, err
    found: dict[str, Any] = json.loads(out)
    return found


def test_create_from_images_of_other_repositories_moves_no_layer(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    amd64 = build_image(BIG[:1], architecture="amd64")
    arm64 = build_image(BIG[1:], architecture="arm64", variant="v8")
    windows = with_config(
        build_image((260_000,), architecture="amd64", os_name="windows"),
        {"os.version": "10.0.17763.1879", "os.features": ["win32k"]},
    )
    target = Reference.parse(registry.ref(registry.repo("index"), "multi"))
    sources = [put_image(client, tmp_path, image, registry.ref(registry.repo("src"))) for image in (amd64, windows)]
    sources.append(put_image(client, tmp_path, arm64, str(target.with_tag("arm64"))))  # the target's own repository
    with served_during(registry) as served:
        result = indexed(capsys, "create", str(target), *map(str, sources), "--annotation", "org.example.a=1")
    index = document(client, target)
    assert result["digest"] == str(client.head_manifest(target).digest)
    assert result["reference"] == str(target) and result["mediaType"] == index["mediaType"] == MediaType.OCI_INDEX
    assert index["annotations"] == {"org.example.a": "1"}
    assert [(e["digest"], e["mediaType"], e["platform"]) for e in index["manifests"]] == [
        (str(amd64.digest), MediaType.OCI_MANIFEST, {"architecture": "amd64", "os": "linux"}),
        (str(windows.digest), MediaType.OCI_MANIFEST,
         {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.1879", "os.features": ["win32k"]}),
        (str(arm64.digest), MediaType.OCI_MANIFEST, {"architecture": "arm64", "os": "linux", "variant": "v8"}),
    ]
    assert result["manifestsBrought"] == 2 and result["blobsMounted"] == 4  # a config and a layer each
    for image in (amd64, windows):  # brought into the index's repository, byte for byte
        assert client.get_manifest(target.with_digest(image.digest)).raw == image.manifest
        for digest in layers_of(image):
            assert client.blob_size(target, Digest.parse(digest)) is not None
    assert_no_layer_moved(served, layers_of(amd64) | layers_of(windows) | layers_of(arm64), set(),
                          mounted=result["blobsMounted"])


def test_docker_manifest_list_holds_docker_images_only(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = registry.repo("index")
    amd64 = put_image(client, tmp_path, build_image((1000,), docker=True), registry.ref(repo, "amd64"))
    arm64 = put_image(client, tmp_path, build_image((1000,), architecture="arm64", docker=True),
                      registry.ref(repo, "arm64"))
    oci = put_image(client, tmp_path, build_image((1000,), architecture="s390x"), registry.ref(repo, "oci"))
    target = registry.ref(repo, "list")
    result = indexed(capsys, "create", "--format", "docker", target, str(amd64), str(arm64))
    listing = document(client, Reference.parse(target))
    assert result["mediaType"] == listing["mediaType"] == MediaType.DOCKER_MANIFEST_LIST
    assert [e["mediaType"] for e in listing["manifests"]] == [MediaType.DOCKER_MANIFEST] * 2
    assert "annotations" not in listing
    err = refused(capsys, "index", "create", "--format", "docker", registry.ref(repo, "bad"), str(amd64), str(oci))
    assert "a Docker manifest list holds Docker schema 2 manifests only" in err and str(oci) in err
    # the list keeps its format: an OCI image cannot be added to it
    err = refused(capsys, "index", "add", target, str(oci))
    assert "Docker schema 2 manifests only" in err
    assert "has no annotations" in refused(
        capsys, "index", "create", "--format", "docker", "--annotation", "a=b", registry.ref(repo, "bad"), str(amd64)
    )
    assert "unknown index format 'v2s2'" in refused(
        capsys, "index", "create", "--format", "v2s2", registry.ref(repo, "bad"), str(amd64)
    )
    assert "bad" not in client.tags(Reference.parse(target))  # nothing was written by the refusals
    assert document(client, Reference.parse(target)) == listing


def test_an_index_source_gives_its_entries(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    amd64, arm64 = build_image((1000,)), build_image((1000,), architecture="arm64", variant="v8")
    s390x = build_image((1000,), architecture="s390x")
    multi = put_image(client, tmp_path, build_index({AMD64: amd64, ARM64: arm64}), registry.ref(registry.repo("src")))
    single = put_image(client, tmp_path, s390x, registry.ref(registry.repo("src")))
    target = registry.ref(registry.repo("index"))
    result = indexed(capsys, "create", target, str(multi), str(single), str(single))  # a repeat is listed once
    assert [(m["digest"], m["platform"]) for m in result["manifests"]] == [
        (str(amd64.digest), "linux/amd64"), (str(arm64.digest), "linux/arm64/v8"), (str(s390x.digest), "linux/s390x")
    ]
    other = put_image(client, tmp_path, build_image((1000,)), registry.ref(registry.repo("src")))
    err = refused(capsys, "index", "create", registry.ref(registry.repo("index")), str(multi), str(other))
    assert "two images for linux/amd64" in err


def attestation_of(image: BuiltImage) -> tuple[BuiltImage, dict[str, Any]]:
    """A buildkit-style attestation manifest of ``image`` and its index entry."""
    attestation = build_image((100,), architecture="unknown", os_name="unknown")
    entry = attestation.descriptor.to_json()
    entry["platform"] = {"architecture": "unknown", "os": "unknown"}
    entry["annotations"] = {"vnd.docker.reference.digest": str(image.digest),
                            "vnd.docker.reference.type": "attestation-manifest"}
    return attestation, entry


def test_add_and_remove_entries(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    amd64, arm64 = build_image((1000,)), build_image((1000,), architecture="arm64", variant="v8")
    newer = build_image((1000,), labels={"newer": "yes"})
    repo = registry.repo("index")
    refs = {name: str(put_image(client, tmp_path, image, registry.ref(repo, name)))
            for name, image in (("amd64", amd64), ("arm64", arm64), ("newer", newer))}
    attestation, entry = attestation_of(amd64)
    put_image(client, tmp_path, attestation, registry.ref(repo, "attestation"))
    base = build_index({AMD64: amd64})
    raw = json.loads(base.manifest)
    raw["manifests"].append(entry)
    raw["annotations"] = {"kept": "yes"}
    data = json.dumps(raw).encode()
    target = registry.ref(repo, "multi")
    blobs = {**base.blobs, **attestation.blobs, attestation.digest: attestation.manifest}
    put_image(client, tmp_path, BuiltImage(data, Digest.of(data), MediaType.OCI_INDEX, blobs), target)

    added = indexed(capsys, "add", target, refs["arm64"], refs["amd64"])  # amd64 is there already
    assert [m["digest"] for m in added["manifests"]] == [str(amd64.digest), str(attestation.digest), str(arm64.digest)]
    assert document(client, Reference.parse(target))["annotations"] == {"kept": "yes"}
    assert document(client, Reference.parse(target))["manifests"][1] == entry  # kept as it was
    # an image for a platform already there replaces that entry, and the old image's attestation
    replaced = indexed(capsys, "add", target, refs["newer"])
    assert [m["digest"] for m in replaced["manifests"]] == [str(arm64.digest), str(newer.digest)]
    assert {m["digest"] for m in replaced["removed"]} == {str(amd64.digest), str(attestation.digest)}
    removed = indexed(capsys, "remove", target, "--platform", "linux/arm64")
    assert [m["digest"] for m in removed["manifests"]] == [str(newer.digest)]
    assert removed["removed"][0]["digest"] == str(arm64.digest)
    assert indexed(capsys, "remove", target, str(newer.digest))["manifests"] == []
    assert document(client, Reference.parse(target))["manifests"] == []

    indexed(capsys, "add", target, refs["amd64"])
    before = client.head_manifest(Reference.parse(target)).digest
    artifact = with_config(build_image((100,)), {"os": None, "architecture": None})  # no platform: not an image
    put_image(client, tmp_path, artifact, registry.ref(repo, "artifact"))
    cases = {
        ("remove", target, str(arm64.digest)): f"no entry {arm64.digest} in the index",
        ("remove", target, "--platform", "linux/s390x"): "no entry for platform linux/s390x in the index "
        "(has: linux/amd64)",
        ("remove", target, "sha256:abc"): "'sha256:abc' is not a digest",
        ("remove", target): "needs a digest or --platform",
        ("remove", target, "--platform", "linux"): "invalid platform 'linux'",
        ("add", refs["amd64"], refs["arm64"]): "is an image (application/vnd.oci.image.manifest.v1+json), not an index",
        ("add", registry.ref(repo, "missing"), refs["arm64"]): "missing",
        ("create", registry.ref(repo, "x"), registry.ref(repo, "missing")): "missing",
        ("create", registry.ref(repo, "x"), registry.ref(repo, "artifact")): "names no os and architecture",
    }
    for argv, message in cases.items():
        assert message in refused(capsys, "index", *argv), argv
    assert client.head_manifest(Reference.parse(target)).digest == before


def test_sources_on_another_registry_are_refused(
    registry: RunningRegistry,
    distribution: RunningRegistry,
    client: RegistryClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    there = put_image(client, tmp_path, build_image((1000,)), distribution.ref(distribution.repo("src")))
    here = put_image(client, tmp_path, build_image((1000,), architecture="arm64"), registry.ref(registry.repo("src")))
    target = registry.ref(registry.repo("index"))
    err = refused(capsys, "index", "create", target, str(here), str(there))
    assert f"{there} is on another registry than {registry.host}" in err and "cargohold copy" in err
    indexed(capsys, "create", target, str(here))
    assert "is on another registry" in refused(capsys, "index", "add", target, str(there))


def test_mutate_refuses_an_index_inside_an_index(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inner = build_index({AMD64: build_image((1000,))})
    outer = json.dumps({"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX,
                        "manifests": [{**inner.descriptor.to_json(), "platform": AMD64.to_json()}]}).encode()
    ref = registry.ref(registry.repo("index"))
    put_image(client, tmp_path, BuiltImage(outer, Digest.of(outer), MediaType.OCI_INDEX,
                                           {**inner.blobs, inner.digest: inner.manifest}), ref)
    err = refused(capsys, "mutate", ref, "--label", "a=b")
    assert "an index inside an index cannot be mutated" in err


def test_mutate_leaves_attestations_as_they_are(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    amd64 = build_image((1000,))
    attestation, entry = attestation_of(amd64)
    base = build_index({AMD64: amd64})
    raw = json.loads(base.manifest)
    raw["manifests"].append(entry)
    data = json.dumps(raw).encode()
    ref = registry.ref(registry.repo("index"))
    blobs = {**base.blobs, **attestation.blobs, attestation.digest: attestation.manifest}
    put_image(client, tmp_path, BuiltImage(data, Digest.of(data), MediaType.OCI_INDEX, blobs), ref)
    code, out, err = run(capsys, "mutate", ref, "--label", "a=b", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert [i["platform"] for i in result["images"]] == ["linux/amd64"]
    entries = document(client, Reference.parse(ref))["manifests"]
    assert entries[0]["digest"] == result["images"][0]["digest"] != str(amd64.digest)
    assert entries[1] == entry


@requires_tool("skopeo")
@requires_tool("podman")
def test_skopeo_and_podman_read_the_indexes(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = registry.repo("index")
    made = {}
    for fmt, docker in (("oci", False), ("docker", True)):
        amd64 = build_image((2000,), docker=docker, labels={"arch": "amd64"})
        arm64 = build_image((2000,), architecture="arm64", variant="v8", docker=docker, labels={"arch": "arm64"})
        sources = [str(put_image(client, tmp_path, image, registry.ref(registry.repo("src"))))
                   for image in (amd64, arm64)]
        made[fmt] = (indexed(capsys, "create", "--format", fmt, registry.ref(repo, fmt), *sources), arm64)
    tools = Clients(tmp_path / "tools", [registry.host])
    try:
        for fmt, (result, arm64) in made.items():
            ref = registry.ref(repo, fmt)
            raw = tools.skopeo.inspect_raw(f"docker://{ref}")
            assert Digest.of(raw) == Digest.parse(result["digest"])
            assert json.loads(raw)["mediaType"] == result["mediaType"]
            assert json.loads(raw)["manifests"][1]["digest"] == str(arm64.digest)
            shown = json.loads(tools.skopeo.out("--override-arch", "arm64", "--override-variant", "v8", "inspect",
                                                "--tls-verify=false", f"docker://{ref}"))
            assert shown["Labels"] == {"arch": "arm64"}
            tools.podman.run("pull", "-q", "--tls-verify=false", "--arch", "arm64", "--variant", "v8", ref)
            pulled = json.loads(tools.podman.out("image", "inspect", ref))[0]
            assert pulled["Architecture"] == "arm64" and pulled["Labels"] == {"arch": "arm64"}
            assert pulled["Digest"] == result["digest"]  # the index it was pulled through
    finally:
        tools.close()
