"""Fixtures for interop tests: test images built once per session, per-test client configuration, and
the test's own server.

Interop tests run on SQLite + filesystem, but those marked ``scaled`` (one push and pull per client,
mounts, concurrent pushes, chunked uploads, a few Distribution parity cases) run on PostgreSQL + S3
instead, as replicas would: each client's other tests cover it on SQLite + filesystem, and the API
suite runs every request on both. The whole matrix for every client would double the slowest part of
the suite to find what the API suite finds already.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backends import S3, SQLITE, Setup, setup_for
from tests.support.requirements import require_tool
from tests.support.servers import CargoholdServer, cargohold

from .tools import (
    BuiltImages,
    Clients,
    MakeClients,
    OciLayout,
    build_test_images,
    debian_rootfs_tarball,
    single_layer_layout,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "scaled: the test runs on PostgreSQL + S3, not SQLite + filesystem")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("scaled"):
        metafunc.parametrize("backend", [S3], indirect=True)


@pytest.fixture()
def backend(request: pytest.FixtureRequest) -> str:
    """The setup of the test's own server: SQLite + filesystem, or PostgreSQL + S3 for ``scaled`` tests."""
    return str(getattr(request, "param", SQLITE))


@pytest.fixture()
def setup(backend: str, request: pytest.FixtureRequest) -> Setup:
    return setup_for(backend, request)


@pytest.fixture()
def fresh_registry(tmp_path: Path, setup: Setup) -> Iterator[CargoholdServer]:
    """A server of the test's own, for checks on everything in storage."""
    with cargohold(tmp_path, env=setup.env, database_url=setup.database_url) as server:
        yield server


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> BuiltImages:
    """The small busybox images (OCI, docker, multi-arch index), built offline with buildah."""
    require_tool("buildah")
    require_tool("busybox", "busybox-static")
    return build_test_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def debian(tmp_path_factory: pytest.TempPathFactory) -> OciLayout:
    """A one-layer image (tag ``bookworm``) of a real debootstrapped Debian root filesystem."""
    tarball = debian_rootfs_tarball("bookworm")
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/bash"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
    }
    return single_layer_layout(tarball, tmp_path_factory.mktemp("debian") / "layout", "bookworm", config)


@pytest.fixture()
def make_clients(tmp_path: Path) -> Iterator[MakeClients]:
    """Make more client configurations (own storage each) under tmp_path; removed after the test."""
    made: list[Clients] = []

    def make(name: str, insecure: list[str]) -> Clients:
        made.append(Clients(tmp_path / name, insecure))
        return made[-1]

    yield make
    for clients in made:
        clients.close()


@pytest.fixture()
def clients(make_clients: MakeClients, fresh_registry: CargoholdServer) -> Clients:
    """skopeo, buildah and podman with private storage, trusting the test's own cargohold over HTTP."""
    return make_clients("clients", [fresh_registry.host])
