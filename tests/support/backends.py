"""The setups a server runs on in the test matrix: where its metadata and its blobs live.

- ``sqlite``: the embedded default, SQLite in the data directory and blobs on its filesystem;
- ``postgres``: PostgreSQL for metadata, blobs still on the filesystem;
- ``postgres+s3``: PostgreSQL and an S3 bucket (SeaweedFS), blobs streamed through the registry, as
  replicas run; ``postgres+s3+redirect``: the same, blob GETs sent to presigned URLs (the default).

Each server gets a database of its own (a copy of a migrated one) and a key prefix of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tests.support.postgres import PostgresCluster
from tests.support.seaweedfs import SeaweedFS

SQLITE = "sqlite"
POSTGRES = "postgres"
S3 = "postgres+s3"
S3_REDIRECT = "postgres+s3+redirect"
#: the embedded setup and the scaled one: what every server-level suite runs on
MATRIX = [SQLITE, S3]
#: the setups with blobs in S3
ON_S3 = (S3, S3_REDIRECT)


@dataclass(frozen=True)
class Setup:
    backend: str
    #: ``serve``'s environment (the storage settings)
    env: dict[str, str] = field(default_factory=dict)
    #: ``--database-url``: None for SQLite in the data directory
    database_url: str | None = None

    @property
    def on_s3(self) -> bool:
        return self.backend in ON_S3


def s3_env(server: SeaweedFS, **settings: str) -> dict[str, str]:
    """``serve``'s environment for blobs in ``server``'s bucket, under a prefix of their own (redirects off
    unless ``redirect="true"``)."""
    options = {**server.options(server.prefix()), "redirect": "false", **settings}
    return {"CARGOHOLD_STORAGE_DRIVER": "s3",
            **{f"CARGOHOLD_STORAGE_S3_{key.upper()}": str(value) for key, value in options.items()}}


def setup_for(backend: str, request: pytest.FixtureRequest) -> Setup:
    """A new place for one server's data on ``backend`` (its PostgreSQL database is migrated already)."""
    if backend == SQLITE:
        return Setup(backend)
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    url = cluster.migrated_database()
    if backend == POSTGRES:
        return Setup(backend, database_url=url)
    seaweedfs: SeaweedFS = request.getfixturevalue("seaweedfs")
    redirect = "true" if backend == S3_REDIRECT else "false"
    return Setup(backend, s3_env(seaweedfs, redirect=redirect), url)
