"""buildah against a real cargohold: push, pull, build FROM the registry, and multi-arch indexes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.servers import CargoholdServer

from . import scenarios
from .tools import BuiltImages, Clients, MakeClients, requires_buildah, requires_skopeo

pytestmark = [requires_buildah, requires_skopeo]


def _load(clients: Clients, images: BuiltImages, tag: str) -> str:
    """Copy a session image into the test's own storage; return its image ID."""
    return clients.buildah.out("pull", "-q", f"oci:{images.oci.path}:{tag}").strip()


@pytest.mark.scaled
def test_push_then_pull_into_fresh_storage(
    clients: Clients, make_clients: MakeClients, images: BuiltImages, fresh_registry: CargoholdServer
) -> None:
    image_id = _load(clients, images, "small")
    ref = f"{fresh_registry.host}/interop/buildah:1"
    clients.buildah.run("push", "--tls-verify=false", image_id, f"docker://{ref}")
    fresh_registry.assert_storage_consistent()

    other = make_clients("other", [fresh_registry.host])
    pulled = other.buildah.out("pull", "-q", "--tls-verify=false", f"docker://{ref}").strip()
    assert pulled == image_id, "the image ID (config digest) changed on the way through the registry"
    info = json.loads(other.buildah.out("inspect", "--type", "image", pulled))
    assert info["OCIv1"]["config"]["Labels"]["org.opencontainers.image.title"] == "cargohold-interop"

    # the layers unpack into a working root filesystem: run the image's busybox on its files
    container = other.buildah.out("from", "--pull-never", pulled).strip()
    assert other.buildah.out("run", container, "--", "/bin/cat", "/built.txt", "/hello.txt") == (
        "built-by-run\nhello from cargohold interop tests\n"
    )


def test_push_docker_schema2(clients: Clients, images: BuiltImages, fresh_registry: CargoholdServer) -> None:
    image_id = _load(clients, images, "small")
    ref = f"docker://{fresh_registry.host}/interop/buildah-docker:1"
    clients.buildah.run("push", "--tls-verify=false", "--format", "v2s2", image_id, ref)
    manifest = json.loads(clients.skopeo.inspect_raw(ref))
    assert manifest["mediaType"] == scenarios.DOCKER_MANIFEST
    assert manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    assert len(manifest["layers"]) == 2
    fresh_registry.assert_storage_consistent()


def test_manifest_push_all(clients: Clients, images: BuiltImages, fresh_registry: CargoholdServer) -> None:
    small, base = _load(clients, images, "small"), _load(clients, images, "base")
    buildah = clients.buildah
    buildah.run("manifest", "create", "localhost/multi:1")
    buildah.run("manifest", "add", "--arch", "amd64", "localhost/multi:1", small)
    buildah.run("manifest", "add", "--arch", "arm64", "--variant", "v8", "localhost/multi:1", base)
    ref = f"docker://{fresh_registry.host}/interop/buildah-multi:1"
    buildah.run("manifest", "push", "--all", "--tls-verify=false", "localhost/multi:1", ref)

    index = json.loads(clients.skopeo.inspect_raw(ref))
    assert index["mediaType"] == scenarios.OCI_INDEX
    assert {m["platform"]["architecture"] for m in index["manifests"]} == {"amd64", "arm64"}
    for child in index["manifests"]:
        raw = clients.skopeo.inspect_raw(f"docker://{fresh_registry.host}/interop/buildah-multi@{child['digest']}")
        assert scenarios.sha256(raw) == child["digest"]
    fresh_registry.assert_storage_consistent()


def test_build_from_the_registry(
    clients: Clients, images: BuiltImages, fresh_registry: CargoholdServer, tmp_path: Path
) -> None:
    """``FROM`` an image in cargohold (pulled over plain HTTP), a ``RUN`` step, push the result back."""
    host = fresh_registry.host
    clients.skopeo.copy(f"oci:{images.oci.path}:small", f"docker://{host}/interop/base:1")
    context = tmp_path / "context"
    context.mkdir()
    (context / "Containerfile").write_text(
        f"FROM {host}/interop/base:1\n"
        "RUN echo layered > /layered.txt\n"
        "LABEL org.example.stage=child\n"
    )
    clients.buildah.run("bud", "--tls-verify=false", "--isolation", "chroot", "--layers=false",
                        "-t", f"{host}/interop/child:1", "-f", str(context / "Containerfile"), str(context))
    clients.buildah.run("push", "--tls-verify=false", f"{host}/interop/child:1")

    info = clients.skopeo.inspect(f"docker://{host}/interop/child:1")
    base_layers = [layer["digest"] for layer in images.oci.manifest("small")["layers"]]
    assert info["Layers"][: len(base_layers)] == base_layers, "the base layers were not reused as they are"
    assert len(info["Layers"]) == len(base_layers) + 1
    assert info["Labels"]["org.example.stage"] == "child"
    fresh_registry.assert_storage_consistent()


def test_push_zstd_layers(
    clients: Clients, make_clients: MakeClients, images: BuiltImages, fresh_registry: CargoholdServer
) -> None:
    """Layers recompressed with zstd on push (``tar+zstd``); another storage pulls and unpacks them."""
    image_id = _load(clients, images, "small")
    ref = f"{fresh_registry.host}/interop/zstd:1"
    clients.buildah.run("push", "--tls-verify=false", "--compression-format", "zstd", image_id, f"docker://{ref}")
    manifest = json.loads(clients.skopeo.inspect_raw(f"docker://{ref}"))
    assert [layer["mediaType"] for layer in manifest["layers"]] == ["application/vnd.oci.image.layer.v1.tar+zstd"] * 2
    fresh_registry.assert_storage_consistent()

    other = make_clients("other", [fresh_registry.host])
    pulled = other.buildah.out("pull", "-q", "--tls-verify=false", f"docker://{ref}").strip()
    assert pulled == image_id
    container = other.buildah.out("from", "--pull-never", pulled).strip()
    assert other.buildah.out("run", container, "--", "/bin/cat", "/built.txt") == "built-by-run\n"
