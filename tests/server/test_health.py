"""``/healthz`` and ``/readyz`` on a real server: no credentials, what readiness checks (a database or a
blob store that stops turns it 503 within 2 s, and back once it answers), what a storm of readiness
requests costs, draining on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from cargohold.service.readiness import ANSWER_SECONDS, CACHE_SECONDS
from tests.support.backends import s3_env
from tests.support.postgres import PostgresCluster, start_cluster
from tests.support.seaweedfs import SeaweedFS
from tests.support.servers import CargoholdServer, cargohold

#: how soon readiness follows a dependency that stops
WITHIN_SECONDS = 2.0
#: the readiness check's statement (:meth:`cargohold.metadata.postgres_db.PostgresDatabase.check`)
CHECK_STATEMENT = "SELECT version FROM schema_migrations LIMIT 1"


def test_health_needs_no_credentials_under_token_auth(tmp_path: Path) -> None:
    with cargohold(tmp_path, "--auth", "token") as server:
        assert httpx.get(f"{server.url}/v2/").status_code == 401
        for path in ("/healthz", "/readyz"):
            r = httpx.get(f"{server.url}{path}")
            assert (r.status_code, r.json()) == (200, {"status": "ok"}), path
            assert httpx.head(f"{server.url}{path}").status_code == 200
        r = httpx.post(f"{server.url}/readyz")
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"


def _readyz(url: str) -> tuple[int, dict[str, str]]:
    r = httpx.get(f"{url}/readyz", timeout=10)
    return r.status_code, r.json().get("failed", {})


def _ready_everywhere(server: CargoholdServer, within: float) -> None:
    """/readyz answers 200 within ``within`` s, and from every worker once their cached failures lapse."""
    assert _until(server, 200, within) == {}
    time.sleep(CACHE_SECONDS + ANSWER_SECONDS)  # another worker's last probe may have failed just before
    for _ in range(4):
        assert _readyz(server.url) == (200, {})


def _until(server: CargoholdServer, status: int, within: float) -> dict[str, str]:
    """Ask /readyz until it answers ``status`` (each answer fast, /healthz 200 all along); what failed."""
    deadline = time.monotonic() + within
    while True:
        asked = time.monotonic()
        found, failed = _readyz(server.url)
        assert time.monotonic() - asked < ANSWER_SECONDS + 0.5, "readyz waited on a dependency"
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        if found == status:
            return failed
        assert time.monotonic() < deadline, f"readyz still answers {found} ({failed}) after {within} s"
        time.sleep(0.05)


def test_readyz_names_a_broken_blob_store(tmp_path: Path) -> None:
    with cargohold(tmp_path, "--workers", "1") as server:  # one worker: started when the server answers
        blobs = server.data_dir / "blobs"
        blobs.rename(server.data_dir / "elsewhere")
        status, failed = _readyz(server.url)
        assert status == 503 and list(failed) == ["blobs"] and str(blobs) in failed["blobs"]
        assert httpx.get(f"{server.url}/healthz").status_code == 200  # alive, not ready
        (server.data_dir / "elsewhere").rename(blobs)
        assert _until(server, 200, WITHIN_SECONDS) == {}  # once the failure's cached moment passes


def test_readyz_names_a_broken_database(tmp_path: Path) -> None:
    with cargohold(tmp_path, "--workers", "1") as server:
        database = server.data_dir / "metadata.db"
        database.rename(server.data_dir / "moved.db")  # the open connection would write to a file no one reads
        status, failed = _readyz(server.url)
        assert status == 503 and list(failed) == ["database"] and str(database) in failed["database"]
        (server.data_dir / "moved.db").rename(database)
        assert _until(server, 200, WITHIN_SECONDS) == {}


def test_readyz_answers_503_while_draining_and_requests_in_flight_finish(tmp_path: Path) -> None:
    env = {"CARGOHOLD_SHUTDOWN_DELAY_SECONDS": "3"}
    with cargohold(tmp_path, "--workers", "2", env=env) as server:
        assert _readyz(server.url) == (200, {})
        data = os.urandom(4_500_000)
        location = httpx.post(f"{server.url}/v2/drain/ready/blobs/uploads/").headers["location"]
        result: dict[str, int] = {}

        def slow_body() -> Iterator[bytes]:  # ~4.5 s: past the delay, into granian's own drain
            for i in range(0, len(data), 100_000):
                yield data[i : i + 100_000]
                time.sleep(0.1)

        def upload() -> None:
            result["status"] = httpx.patch(f"{server.url}{location}", content=slow_body(), timeout=30).status_code

        thread = threading.Thread(target=upload)
        thread.start()
        time.sleep(0.3)
        assert server.process is not None
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        for _ in range(2):  # on new connections, which may reach either worker
            status, failed = _readyz(server.url)
            assert status == 503 and list(failed) == ["shutdown"], failed
            assert httpx.get(f"{server.url}/healthz").status_code == 200
            assert httpx.get(f"{server.url}/v2/_catalog").status_code == 200  # still served
        assert time.monotonic() - signalled < 3, "the checks above ran after the delay"
        thread.join(30)
        assert result.get("status") == 202
        assert server.process.wait(30) == 0
    assert "draining" in server.log()


async def _storm(url: str, count: int) -> list[int]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        answers = await asyncio.gather(*(client.get("/readyz") for _ in range(count)))
    return [r.status_code for r in answers]


def test_readyz_follows_postgresql_stopping_and_starting_and_a_storm_costs_a_probe_per_period(
        tmp_path: Path, seaweedfs: SeaweedFS) -> None:
    """Two workers on PostgreSQL and S3: 300 concurrent /readyz cost each worker about one database query
    per cached period; a database that stops fails readiness within 2 s (requests get 500, not a hang),
    and the connection pool reconnects once it is back."""
    cluster = start_cluster(Path(tempfile.mkdtemp(prefix="cargohold-pg-")))
    try:
        url = cluster.fresh_database()
        cluster.execute(f"ALTER DATABASE {url.rsplit('/', 1)[1]} SET log_statement = 'all'")
        statements = cluster.root / "server.log"
        with cargohold(tmp_path, "--workers", "2", env=s3_env(seaweedfs), database_url=url) as server:
            assert _readyz(server.url) == (200, {})
            logged = statements.stat().st_size
            started = time.monotonic()
            answers = asyncio.run(_storm(server.url, 300))
            seconds = time.monotonic() - started
            assert answers == [200] * 300
            assert seconds < 10
            time.sleep(0.2)  # the last statements reach the log
            with statements.open("rb") as log:
                log.seek(logged)
                probes = log.read().decode(errors="replace").count(CHECK_STATEMENT)
            # two workers, each probing at most once per period (and once more for the period it was in)
            assert 1 <= probes <= 2 * (seconds / CACHE_SECONDS + 2), (probes, seconds)

            cluster.halt()
            stopped = time.monotonic()
            failed = _until(server, 503, WITHIN_SECONDS)
            assert "database" in failed and "shutdown" not in failed, failed
            assert time.monotonic() - stopped < WITHIN_SECONDS
            for _ in range(4):  # both workers, a connection that broke, then none to be had
                status, failed = _readyz(server.url)
                assert status == 503 and "database" in failed, failed
            assert httpx.get(f"{server.url}/v2/_catalog", timeout=30).status_code == 500
            cluster.start()
            _ready_everywhere(server, 10)
            assert httpx.get(f"{server.url}/v2/_catalog").json() == {"repositories": []}
    finally:
        cluster.stop()


def test_readyz_follows_the_s3_store_stopping_and_going_on(
        tmp_path: Path, postgres: PostgresCluster, seaweedfs: SeaweedFS) -> None:
    """Two workers on PostgreSQL and S3; SeaweedFS stops (SIGSTOP: its requests hang, the bucket HEAD times
    out) and goes on again."""
    with cargohold(tmp_path, "--workers", "2", env=s3_env(seaweedfs),
                   database_url=postgres.migrated_database()) as server:
        assert _readyz(server.url) == (200, {})
        os.kill(seaweedfs.pid, signal.SIGSTOP)
        try:
            stopped = time.monotonic()
            failed = _until(server, 503, WITHIN_SECONDS)
            assert list(failed) == ["blobs"], failed
            assert time.monotonic() - stopped < WITHIN_SECONDS
            for _ in range(4):
                status, failed = _readyz(server.url)
                assert status == 503 and list(failed) == ["blobs"], failed
        finally:
            os.kill(seaweedfs.pid, signal.SIGCONT)
        _ready_everywhere(server, 10)
