"""The API suite runs against a server on each metadata backend (:data:`~tests.support.postgres.BACKENDS`):
a test that uses a server fixture (or ``database``) runs once per backend, on 2 workers and the
filesystem blob store. The blob and upload tests on the shared server also run on :data:`S3`: blobs in
S3 (SeaweedFS, streamed through the registry) and metadata in PostgreSQL, as replicas would run."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.postgres import BACKENDS, PostgresCluster
from tests.support.seaweedfs import SeaweedFS
from tests.support.servers import CargoholdServer, cargohold

WORKERS = ("--workers", "2")
#: the backend of blobs in S3 and metadata in PostgreSQL
S3 = "postgres+s3"
#: the modules whose tests on the shared server (``registry``) also run on :data:`S3`
S3_MODULES = ("test_blobs", "test_uploads")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        backends = list(BACKENDS)
        if metafunc.module.__name__.rsplit(".", 1)[-1] in S3_MODULES and "fresh_registry" not in metafunc.fixturenames:
            backends.append(S3)
        metafunc.parametrize("backend", backends, indirect=True, scope="session")


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    """The metadata backend of the servers this test talks to (parametrized above)."""
    return str(request.param)


def s3_env(server: SeaweedFS, **settings: str) -> dict[str, str]:
    """``serve``'s environment for blobs in ``server``'s bucket, under a prefix of their own."""
    options = {**server.options(server.prefix()), "redirect": "false", **settings}
    return {"CARGOHOLD_STORAGE_DRIVER": "s3",
            **{f"CARGOHOLD_STORAGE_S3_{key.upper()}": str(value) for key, value in options.items()}}


def _new_database(backend: str, request: pytest.FixtureRequest) -> str | None:
    if backend == "sqlite":
        return None  # the data directory's metadata.db
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.fresh_database()  # serve migrates it


@pytest.fixture()
def database(backend: str, request: pytest.FixtureRequest) -> str | None:
    """``--database-url`` for a server of the test's own: a new database, or None for SQLite in its data directory."""
    return _new_database(backend, request)


@pytest.fixture(scope="session")
def registry(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CargoholdServer]:
    """One server per backend for tests that use their own repository names."""
    env = s3_env(request.getfixturevalue("seaweedfs")) if backend == S3 else {}
    with cargohold(tmp_path_factory.mktemp(f"registry-{backend}"), *WORKERS, env=env,
                   database_url=_new_database(backend, request)) as server:
        yield server


@pytest.fixture()
def fresh_registry(tmp_path: Path, database: str | None) -> Iterator[CargoholdServer]:
    """A server of the test's own, for checks on everything in storage."""
    with cargohold(tmp_path, *WORKERS, database_url=database) as server:
        yield server


@pytest.fixture()
def client(registry: CargoholdServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry.url, timeout=30) as c:
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
