"""What replicas share through the database: the token signing key, and the periodic jobs' lease."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.postgres import PostgresCluster, query
from tests.support.seaweedfs import SeaweedFS
from tests.support.servers import SRC

from .conftest import Deployment, deployment, descendants, kill_replica

PASSWORD = "alice-password"
FAST_LOGINS = {"CARGOHOLD_PASSWORD_COST": "4"}


@pytest.fixture(scope="module")
def with_tokens(postgres: PostgresCluster, seaweedfs: SeaweedFS,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Two replicas with ``auth: token`` and no key configured, started together on an empty database."""
    with deployment(tmp_path_factory.mktemp("tokens"), 2, postgres, seaweedfs, "--auth", "token",
                    env=FAST_LOGINS) as replicas:
        subprocess.run(
            [sys.executable, "-m", "cargohold.cli.main", "admin", "--data-dir", str(replicas.replicas[0].data_dir),
             "--database-url", replicas.database_url, "user", "add", "alice", "--superuser", "--password-stdin"],
            input=f"{PASSWORD}\n", text=True, check=True, capture_output=True, timeout=60,
            env={**os.environ, "PYTHONPATH": str(SRC), **FAST_LOGINS})
        yield replicas


def token_from(url: str, scope: str) -> str:
    r = httpx.get(f"{url}/auth/token", params={"service": "cargohold", "scope": scope}, auth=("alice", PASSWORD))
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def test_a_token_from_one_replica_is_accepted_by_the_other(with_tokens: Deployment) -> None:
    one, two = with_tokens.urls()
    assert httpx.get(f"{two}/v2/").status_code == 401
    data = os.urandom(1000)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    for issuer, user in ((one, two), (two, one)):
        token = token_from(issuer, "repository:scale/tokens:pull,push")
        with httpx.Client(base_url=user, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            r = client.post("/v2/scale/tokens/blobs/uploads/")
            assert r.status_code == 202, r.text
            r = client.put(r.headers["location"], params={"digest": digest}, content=data,
                           headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 201, r.text
            assert client.head(f"/v2/scale/tokens/blobs/{digest}").status_code == 200
    # one key for both (made once, by whichever started first), published by both
    jwks = [httpx.get(f"{url}/auth/jwks").json() for url in (one, two)]
    assert jwks[0] == jwks[1] and len(jwks[0]["keys"]) == 1
    assert query(with_tokens.database_url, "SELECT count(*) FROM signing_keys WHERE name = 'token'") == [(1,)]


def lease_holder(url: str) -> int | None:
    """The process id of the purge's lease holder (``host:pid:random``), if any."""
    rows = query(url, "SELECT holder FROM job_leases WHERE name = 'purge-uploads' AND expires_at > ?", (time.time(),))
    return int(rows[0][0].split(":")[-2]) if rows else None


def test_a_killed_lease_holder_is_replaced_within_a_minute(
        postgres: PostgresCluster, seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    # uploads abandoned for 2 s are purged: the purge runs every 2 s, its lease lasts 4 s
    with deployment(tmp_path, 2, postgres, seaweedfs, env={"CARGOHOLD_UPLOAD_MAX_AGE_SECONDS": "2"}) as replicas:
        deadline = time.monotonic() + 20
        while (holder := lease_holder(replicas.database_url)) is None:
            assert time.monotonic() < deadline, "nobody took the purge's lease"
            time.sleep(0.2)
        pids = [set(descendants(replica.process.pid)) if replica.process else set() for replica in replicas.replicas]
        dead = next(n for n, found in enumerate(pids) if holder in found)
        survivor = replicas.replicas[1 - dead]
        kill_replica(replicas.replicas[dead])
        killed_at = time.monotonic()

        while (holder := lease_holder(replicas.database_url)) is None or holder not in pids[1 - dead]:
            assert time.monotonic() - killed_at < 60, "the dead holder was not replaced within a minute"
            time.sleep(0.2)
        replaced = time.monotonic() - killed_at
        assert replaced < 15  # the dead holder's lease (4 s) and one try (under 2 s), on a busy machine
        # and the new holder runs the job: an upload abandoned now is purged
        r = httpx.post(f"{survivor.url}/v2/scale/abandoned/blobs/uploads/")
        assert r.status_code == 202
        location = r.headers["location"]
        deadline = time.monotonic() + 20
        while httpx.get(location if location.startswith("http") else f"{survivor.url}{location}").status_code != 404:
            assert time.monotonic() < deadline, "the abandoned upload was not purged"
            time.sleep(0.5)
