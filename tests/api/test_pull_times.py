"""Manifest pull times on each setup (SQLite + filesystem, PostgreSQL + S3): a GET by tag or by digest moves
``manifest_pulls.pulled_at`` forward once the worker writes its batch, a HEAD does not, a server stopped with
SIGTERM writes what it holds, and a deleted manifest's pull time goes with it."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.backends import Setup
from tests.support.servers import CargoholdServer, cargohold

from .conftest import WORKERS
from .helpers import OCI_MANIFEST, image_manifest, put_manifest, sha256

FLUSH = 0.3


def pull_times(server: CargoholdServer) -> dict[tuple[str, str], int]:
    """(repository, digest) -> pulled_at, read from the server's database."""
    select = ("SELECT r.name, p.digest, p.pulled_at FROM manifest_pulls p"
              " JOIN repositories r ON r.id = p.repository_id")
    if server.database_url is not None:
        import psycopg

        with psycopg.connect(server.database_url) as pg:
            rows = pg.execute(select).fetchall()
    else:
        with contextlib.closing(sqlite3.connect(server.data_dir / "metadata.db")) as db:
            rows = db.execute(select).fetchall()
    return {(row[0], row[1]): int(row[2]) for row in rows}


def wait_for(server: CargoholdServer, key: tuple[str, str], after: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = pull_times(server).get(key)
        if found is not None and found >= after:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no pull of {key} at or after {after}: {pull_times(server)}")


@contextlib.contextmanager
def registry(tmp: Path, setup: Setup, flush: float = FLUSH) -> Iterator[tuple[CargoholdServer, httpx.Client]]:
    env = {**setup.env, "CARGOHOLD_SERVER_PULL_TIMES_FLUSH_SECONDS": str(flush)}
    with cargohold(tmp, *WORKERS, env=env, database_url=setup.database_url) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        yield server, client


def push(client: httpx.Client, repo: str, tag: str, seed: str) -> str:
    raw = image_manifest(client, repo, layers=1, seed=seed)
    assert put_manifest(client, repo, tag, raw, OCI_MANIFEST).status_code == 201
    return sha256(raw)


def test_a_get_moves_pulled_at_forward_and_a_head_does_not(tmp_path: Path, setup: Setup) -> None:
    with registry(tmp_path, setup) as (server, client):
        pulled = push(client, "pulls/app", "v1", "pulled")
        headed = push(client, "pulls/app", "v2", "headed")
        started = int(time.time())
        for _ in range(5):  # whichever worker serves it
            assert client.get("/v2/pulls/app/manifests/v1", headers={"Accept": OCI_MANIFEST}).status_code == 200
            assert client.head("/v2/pulls/app/manifests/v2", headers={"Accept": OCI_MANIFEST}).status_code == 200
        first = wait_for(server, ("pulls/app", pulled), started)
        time.sleep(4 * FLUSH)  # every worker wrote its batch: the HEADs made none
        assert ("pulls/app", headed) not in pull_times(server)
        time.sleep(1.1)  # pull times are in seconds
        later = int(time.time())
        assert client.get(f"/v2/pulls/app/manifests/{pulled}", headers={"Accept": OCI_MANIFEST}).status_code == 200
        assert wait_for(server, ("pulls/app", pulled), later) > first


def test_a_server_stopped_with_sigterm_writes_the_pull_times_it_holds(tmp_path: Path, setup: Setup) -> None:
    with registry(tmp_path, setup, flush=3600) as (server, client):
        digest = push(client, "pulls/held", "v1", "held")
        started = int(time.time())
        for _ in range(5):
            assert client.get("/v2/pulls/held/manifests/v1", headers={"Accept": OCI_MANIFEST}).status_code == 200
        time.sleep(0.5)
        assert pull_times(server) == {}  # held in memory, an hour before the next batch
        server.stop()  # SIGTERM
        assert server.process is not None and server.process.returncode == 0
        assert pull_times(server)[("pulls/held", digest)] >= started


def test_a_deleted_manifest_takes_its_pull_time_with_it(tmp_path: Path, setup: Setup) -> None:
    with registry(tmp_path, setup) as (server, client):
        gone = push(client, "pulls/gone", "v1", "gone")
        kept = push(client, "pulls/gone", "v2", "kept")
        started = int(time.time())
        for reference in ("v1", "v2"):
            assert client.get(f"/v2/pulls/gone/manifests/{reference}").status_code == 200
        wait_for(server, ("pulls/gone", gone), started)
        wait_for(server, ("pulls/gone", kept), started)
        assert client.delete(f"/v2/pulls/gone/manifests/{gone}").status_code == 202
        assert set(pull_times(server)) == {("pulls/gone", kept)}


def test_a_pull_of_a_manifest_deleted_before_the_batch_is_left_out(tmp_path: Path, setup: Setup) -> None:
    with registry(tmp_path, setup, flush=3600) as (server, client):
        digest = push(client, "pulls/late", "v1", "late")
        assert client.get("/v2/pulls/late/manifests/v1").status_code == 200
        assert client.delete(f"/v2/pulls/late/manifests/{digest}").status_code == 202
        server.stop()
        assert pull_times(server) == {}
