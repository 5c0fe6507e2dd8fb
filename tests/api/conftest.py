"""The API suite runs against a server on each setup of :data:`~tests.support.backends.MATRIX`: a test
that uses a server fixture (or ``setup``) runs once on SQLite + filesystem and once on PostgreSQL + S3
(SeaweedFS, blobs streamed through the registry), on 2 workers.

Two more setups run where they add something: PostgreSQL + filesystem for the upload tests (the
filesystem store's upload files against PostgreSQL's upload rows; elsewhere it repeats the other two),
and PostgreSQL + S3 with redirects to presigned URLs for the blob and upload tests on the shared server
(its client follows the 307)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.backends import MATRIX, POSTGRES, S3_REDIRECT, Setup, setup_for
from tests.support.servers import CargoholdServer, cargohold

WORKERS = ("--workers", "2")
#: the modules that also run on PostgreSQL + filesystem
POSTGRES_MODULES = ("test_uploads",)
#: the modules whose tests on the shared server (``registry``) also run with blob GETs redirected
REDIRECT_MODULES = ("test_blobs", "test_uploads")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        module = metafunc.module.__name__.rsplit(".", 1)[-1]
        backends = list(MATRIX)
        if module in POSTGRES_MODULES:
            backends.insert(1, POSTGRES)
        if module in REDIRECT_MODULES and not {"fresh_registry", "setup"} & set(metafunc.fixturenames):
            backends.append(S3_REDIRECT)
        metafunc.parametrize("backend", backends, indirect=True, scope="session")


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    """The setup of the servers this test talks to (parametrized above)."""
    return str(request.param)


@pytest.fixture()
def setup(backend: str, request: pytest.FixtureRequest) -> Setup:
    """Where a server of the test's own keeps its metadata and blobs."""
    return setup_for(backend, request)


@pytest.fixture(scope="session")
def registry(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CargoholdServer]:
    """One server per setup for tests that use their own repository names."""
    place = setup_for(backend, request)
    with cargohold(tmp_path_factory.mktemp(f"registry-{backend}"), *WORKERS, env=place.env,
                   database_url=place.database_url) as server:
        yield server


@pytest.fixture()
def fresh_registry(tmp_path: Path, setup: Setup) -> Iterator[CargoholdServer]:
    """A server of the test's own, for checks on everything in storage."""
    with cargohold(tmp_path, *WORKERS, env=setup.env, database_url=setup.database_url) as server:
        yield server


@pytest.fixture()
def client(registry: CargoholdServer) -> Iterator[httpx.Client]:
    """A client of the shared server; it follows a blob GET's redirect to the bucket, as clients do."""
    redirects = registry.env.get("CARGOHOLD_STORAGE_S3_REDIRECT") == "true"
    with httpx.Client(base_url=registry.url, timeout=30, follow_redirects=redirects) as c:
        yield c


@pytest.fixture()
def fresh_client(fresh_registry: CargoholdServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fresh_registry.url, timeout=30) as c:
        yield c


@pytest.fixture()
def repo(request: pytest.FixtureRequest) -> str:
    """A repository name of the test's own on the shared server."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    return f"test/{slug}"
