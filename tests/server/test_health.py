"""``/healthz`` and ``/readyz`` on a real server: no credentials, what readiness checks, draining on SIGTERM."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.postgres import start_cluster
from tests.support.servers import cargohold


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
    r = httpx.get(f"{url}/readyz")
    return r.status_code, r.json().get("failed", {})


def test_readyz_names_a_broken_blob_store(tmp_path: Path) -> None:
    with cargohold(tmp_path, "--workers", "1") as server:  # one worker: started when the server answers
        blobs = server.data_dir / "blobs"
        blobs.rename(server.data_dir / "elsewhere")
        status, failed = _readyz(server.url)
        assert status == 503 and list(failed) == ["blobs"] and str(blobs) in failed["blobs"]
        assert httpx.get(f"{server.url}/healthz").status_code == 200  # alive, not ready
        (server.data_dir / "elsewhere").rename(blobs)
        assert _readyz(server.url) == (200, {})


def test_readyz_names_a_broken_database(tmp_path: Path) -> None:
    with cargohold(tmp_path, "--workers", "1") as server:
        database = server.data_dir / "metadata.db"
        database.rename(server.data_dir / "moved.db")  # the open connection would write to a file no one reads
        status, failed = _readyz(server.url)
        assert status == 503 and list(failed) == ["database"] and str(database) in failed["database"]
        (server.data_dir / "moved.db").rename(database)
        assert _readyz(server.url) == (200, {})


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


def test_readyz_fails_fast_while_postgresql_is_down_and_recovers(tmp_path: Path) -> None:
    """A database that goes away fails readiness within seconds (requests get 500, not a hang), and the
    connection pool reconnects once it is back."""
    cluster = start_cluster(Path(tempfile.mkdtemp(prefix="cargohold-pg-")))
    try:
        with cargohold(tmp_path, "--workers", "1", database_url=cluster.fresh_database()) as server:
            assert _readyz(server.url) == (200, {})
            cluster.halt()
            for _ in range(3):  # a connection that broke, then none to be had
                started = time.monotonic()
                status, failed = _readyz(server.url)
                assert status == 503 and list(failed) == ["database"], failed
                assert time.monotonic() - started < 5
            assert httpx.get(f"{server.url}/v2/_catalog", timeout=30).status_code == 500
            cluster.start()
            deadline = time.monotonic() + 30
            while _readyz(server.url)[0] != 200:
                assert time.monotonic() < deadline, "the pool did not reconnect"
                time.sleep(0.2)
            assert httpx.get(f"{server.url}/v2/_catalog").json() == {"repositories": []}
    finally:
        cluster.stop()
