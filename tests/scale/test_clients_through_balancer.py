"""Real clients push and pull through nginx, round-robin over two and three replicas, no sticky sessions."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.tools import (
    BuiltImages,
    MakeClients,
    OciLayout,
    assert_same_image,
    requires_podman,
    requires_skopeo,
)
from tests.support.nginx import Nginx, nginx
from tests.support.requirements import require_module, requires_tool

from .conftest import Deployment, MiB

pytestmark = [requires_tool("nginx", "nginx-light")]


@pytest.fixture(params=[2, 3], ids=["2 replicas", "3 replicas"])
def balancer(request: pytest.FixtureRequest, three: Deployment, tmp_path: Path) -> Iterator[Nginx]:
    replicas = [replica.host for replica in three.replicas[:request.param]]
    with nginx(tmp_path / "nginx", replicas) as server:
        yield server


def assert_spread(balancer: Nginx) -> None:
    """The requests went to every replica (the balancer's log names the one of each request)."""
    assert set(balancer.upstreams()) == set(balancer.replicas), balancer.upstreams()


@requires_skopeo
def test_skopeo_push_and_pull(balancer: Nginx, images: BuiltImages, make_clients: MakeClients,
                              tmp_path: Path) -> None:
    clients = make_clients("skopeo", [balancer.host])
    ref = f"docker://{balancer.host}/scale/skopeo-{balancer.port}"
    clients.skopeo.copy(f"oci:{images.oci.path}:small", f"{ref}:1")
    clients.skopeo.copy(f"oci:{images.oci.path}:multi", f"{ref}:multi", "--all")
    clients.skopeo.copy(f"{ref}:1", f"oci:{tmp_path / 'out'}:small")
    clients.skopeo.copy(f"{ref}:multi", f"oci:{tmp_path / 'out'}:multi", "--all")
    assert_same_image(images.oci, "small", OciLayout(tmp_path / "out"), "small")
    assert_same_image(images.oci, "multi", OciLayout(tmp_path / "out"), "multi")
    assert sorted(clients.skopeo.list_tags(ref)) == ["1", "multi"]
    assert_spread(balancer)


@requires_podman
@requires_skopeo
def test_podman_pull_and_push(balancer: Nginx, images: BuiltImages, make_clients: MakeClients) -> None:
    clients = make_clients("podman", [balancer.host])
    repository = f"{balancer.host}/scale/podman-{balancer.port}"
    clients.skopeo.copy(f"oci:{images.oci.path}:small", f"docker://{repository}:seed")
    clients.podman.run("pull", "--tls-verify=false", f"{repository}:seed")
    clients.podman.run("tag", f"{repository}:seed", f"{repository}:pushed")
    clients.podman.run("push", "--tls-verify=false", f"{repository}:pushed")
    pushed = clients.skopeo.inspect(f"docker://{repository}:pushed")
    assert pushed["Labels"]["org.opencontainers.image.title"] == "cargohold-interop"
    assert sorted(clients.skopeo.list_tags(f"docker://{repository}")) == ["pushed", "seed"]
    assert_spread(balancer)


def test_oras_chunked_push_and_pull(balancer: Nginx, tmp_path: Path) -> None:
    oras_client = require_module("oras.client", "oras")
    files = {"artifact.bin": os.urandom(7 * MiB + 5), "notes.txt": b"through the balancer\n"}
    source = tmp_path / "source"
    source.mkdir()
    for name, data in files.items():
        (source / name).write_bytes(data)
    client = oras_client.OrasClient(hostname=balancer.host, insecure=True)
    target = f"{balancer.host}/scale/oras-{balancer.port}:chunked"
    cwd = os.getcwd()
    os.chdir(source)  # oras-py names layers by the paths it was given
    try:
        response = client.push(files=sorted(files), target=target, do_chunked=True, chunk_size=MiB)
    finally:
        os.chdir(cwd)
    assert response.status_code == 201
    pulled = client.pull(target=target, outdir=str(tmp_path / "out"))
    assert sorted(Path(p).name for p in pulled) == sorted(files)
    for name, data in files.items():
        assert (tmp_path / "out" / name).read_bytes() == data
    assert_spread(balancer)
