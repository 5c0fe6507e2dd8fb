"""Replicas of one registry (PostgreSQL metadata, blobs in SeaweedFS's S3), each a ``cargohold serve`` on its
own port with a data directory of its own, started together; nginx balances them round-robin."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.interop.conftest import images, make_clients  # noqa: F401 - the interop fixtures, for the clients here
from tests.support import backends
from tests.support.postgres import PostgresCluster
from tests.support.seaweedfs import SeaweedFS
from tests.support.servers import CargoholdServer, free_port

MiB = 1024 * 1024
#: a part size above S3's 5 MiB minimum, so that "one part" and "5 MiB" are different sizes
PART_SIZE = 6 * MiB


def s3_env(server: SeaweedFS, **settings: str) -> dict[str, str]:
    """Replicas' storage: redirects on, as deployed, and parts of :data:`PART_SIZE`."""
    return backends.s3_env(server, **{"part_size": str(PART_SIZE), "redirect": "true", **settings})


@dataclass
class Deployment:
    """Replicas sharing one database and one bucket prefix."""

    replicas: list[CargoholdServer]
    database_url: str

    def urls(self) -> list[str]:
        return [replica.url for replica in self.replicas]


def descendants(pid: int) -> list[int]:
    """The processes under ``pid`` (its granian workers), children before their parents."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                children.setdefault(int(stat.rpartition(")")[2].split()[1]), []).append(int(entry))
    found: list[int] = []
    for child in children.get(pid, []):
        found.extend(descendants(child))
        found.append(child)
    return found


def kill_replica(replica: CargoholdServer) -> None:
    """SIGKILL a replica's workers and then its server process, as a lost machine: nothing is cleaned up."""
    assert replica.process is not None
    for pid in [*descendants(replica.process.pid), replica.process.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    replica.process.wait(10)


def start_replicas(root: Path, count: int, database_url: str, env: dict[str, str],
                   *args: str) -> list[CargoholdServer]:
    """``count`` replicas started at the same moment (they race to migrate and to make the keys)."""
    replicas = [CargoholdServer(root / f"replica-{n}" / "data", free_port(), ["--workers", "1", *args], env,
                                database_url=database_url) for n in range(count)]
    for replica in replicas:
        replica.data_dir.parent.mkdir(parents=True)
    with ThreadPoolExecutor(count) as pool:
        started = [pool.submit(replica.start) for replica in replicas]
    try:
        for future in started:
            future.result()
    except BaseException:
        for replica in replicas:
            replica.stop()
        raise
    return replicas


@contextlib.contextmanager
def deployment(root: Path, count: int, postgres: PostgresCluster, seaweedfs: SeaweedFS, *args: str,
               env: dict[str, str] | None = None) -> Iterator[Deployment]:
    """``count`` replicas on a new (empty) database: the first to start migrates it."""
    url = postgres.fresh_database()
    replicas = start_replicas(root, count, url, {**s3_env(seaweedfs), **(env or {})}, *args)
    try:
        yield Deployment(replicas, url)
    finally:
        for replica in replicas:
            replica.stop()


@pytest.fixture(scope="session")
def three(postgres: PostgresCluster, seaweedfs: SeaweedFS,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Three replicas, auth off, shared by the modules here (each uses repositories of its own)."""
    with deployment(tmp_path_factory.mktemp("three"), 3, postgres, seaweedfs) as replicas:
        yield replicas
