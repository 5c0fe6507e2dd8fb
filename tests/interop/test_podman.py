"""podman against a real cargohold: pull, tag, push, search (the catalog) and ``manifest inspect``."""

from __future__ import annotations

import json

import pytest

from tests.support.servers import CargoholdServer

from .tools import BuiltImages, Clients, OciLayout, requires_podman, requires_skopeo

pytestmark = [requires_podman, requires_skopeo]


def _seed(clients: Clients, layout: OciLayout, tag: str, ref: str, *flags: str) -> None:
    clients.skopeo.copy(f"oci:{layout.path}:{tag}", f"docker://{ref}", *flags)


@pytest.mark.scaled
def test_pull_tag_push(clients: Clients, images: BuiltImages, fresh_registry: CargoholdServer) -> None:
    host = fresh_registry.host
    _seed(clients, images.oci, "small", f"{host}/interop/small:1")
    podman = clients.podman
    podman.run("pull", "--tls-verify=false", f"{host}/interop/small:1")
    podman.run("tag", f"{host}/interop/small:1", f"{host}/interop/podman:pushed")
    podman.run("push", "--tls-verify=false", f"{host}/interop/podman:pushed")
    fresh_registry.assert_storage_consistent()

    pushed = clients.skopeo.inspect(f"docker://{host}/interop/podman:pushed")
    config = images.oci.manifest("small")["config"]["digest"]
    image_id = podman.out("image", "inspect", "--format", "{{.Id}}", f"{host}/interop/podman:pushed").strip()
    assert f"sha256:{image_id}" == config
    assert pushed["Labels"]["org.opencontainers.image.title"] == "cargohold-interop"
    assert clients.skopeo.list_tags(f"docker://{host}/interop/podman") == ["pushed"]


def test_pull_by_digest(clients: Clients, images: BuiltImages, fresh_registry: CargoholdServer) -> None:
    host = fresh_registry.host
    _seed(clients, images.oci, "small", f"{host}/interop/bydigest:1")
    digest = images.oci.descriptor("small")["digest"]
    clients.podman.run("pull", "--tls-verify=false", f"{host}/interop/bydigest@{digest}")
    listed = json.loads(clients.podman.out("images", "--digests", "--format", "json"))
    assert any(image.get("Digest") == digest for image in listed), listed
    fresh_registry.assert_storage_consistent()


def test_search_uses_the_catalog(clients: Clients, images: BuiltImages, fresh_registry: CargoholdServer) -> None:
    host = fresh_registry.host
    for repo in ("interop/alpha", "interop/beta", "other/gamma"):
        _seed(clients, images.oci, "base", f"{host}/{repo}:1")
    _seed(clients, images.oci, "small", f"{host}/interop/beta:2")

    found = json.loads(clients.podman.out("search", "--tls-verify=false", "--format", "json", f"{host}/interop"))
    names = sorted(entry["Name"] for entry in found)
    assert names == [f"{host}/interop/alpha", f"{host}/interop/beta"]

    tags = json.loads(clients.podman.out("search", "--tls-verify=false", "--list-tags", "--format", "json",
                                         f"{host}/interop/beta"))
    assert sorted(tags[0]["Tags"]) == ["1", "2"]
    fresh_registry.assert_storage_consistent()


def test_manifest_inspect_of_an_index(
    clients: Clients, images: BuiltImages, fresh_registry: CargoholdServer
) -> None:
    """podman 4.3 has no --tls-verify here: the registry is trusted through registries.conf instead."""
    host = fresh_registry.host
    _seed(clients, images.oci, "multi", f"{host}/interop/multi:1", "--all")
    listed = json.loads(clients.podman.out("manifest", "inspect", f"{host}/interop/multi:1"))
    expected = {(m["digest"], m["platform"]["architecture"]) for m in images.oci.manifest("multi")["manifests"]}
    assert {(m["digest"], m["platform"]["architecture"]) for m in listed["manifests"]} == expected
    fresh_registry.assert_storage_consistent()


def test_pull_debian_rootfs(clients: Clients, debian: OciLayout, fresh_registry: CargoholdServer) -> None:
    """A real Debian root filesystem: podman unpacks it and checks every layer's diff ID."""
    host = fresh_registry.host
    _seed(clients, debian, "bookworm", f"{host}/library/debian:bookworm")
    clients.podman.run("pull", "--tls-verify=false", f"{host}/library/debian:bookworm")
    info = json.loads(clients.podman.out("image", "inspect", f"{host}/library/debian:bookworm"))[0]
    config = json.loads(debian.blob(debian.manifest("bookworm")["config"]["digest"]))
    assert info["RootFS"]["Layers"] == config["rootfs"]["diff_ids"]
    assert info["Digest"] == debian.descriptor("bookworm")["digest"]
    fresh_registry.assert_storage_consistent()
