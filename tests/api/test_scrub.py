"""The scrub on real servers: ``cargohold scrub`` (and the periodic jobs) re-hash stored blobs and report
those whose bytes no longer match, on SQLite + filesystem and on PostgreSQL + S3 (bytes changed behind
the registry's back: a file on disk, an object in SeaweedFS); on the filesystem store the sweep deletes
blob files that no row names once past the grace, and never one a row or a commit in flight names,
also after a server was killed between placing a blob's bytes and recording its row."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cargohold.cli.main import main
from tests.support.backends import Setup
from tests.support.servers import SRC, CargoholdServer, cargohold, free_port
from tests.support.stored import S3Blobs

from .helpers import push_blob, sha256

REPO = "scrub/app"
HOUR = 3600.0


def scrub(server: CargoholdServer, *args: str, **env: str) -> tuple[int, dict[str, Any], str]:
    """``cargohold scrub --json`` on the server's data (its storage settings from its environment)."""
    result = subprocess.run(
        [sys.executable, "-m", "cargohold.cli.main", "scrub", "--json", "--data-dir", str(server.data_dir),
         *(["--database-url", server.database_url] if server.database_url else []), *args],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(SRC), **server.env, **env},
    )
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout), result.stderr


def _push(client: httpx.Client, count: int, size: int = 3000) -> dict[str, bytes]:
    blobs = {}
    for _ in range(count):
        data = os.urandom(size)
        blobs[push_blob(client, REPO, data)] = data
    return blobs


def _changed(data: bytes) -> bytes:
    return bytes([data[0] ^ 0xFF]) + data[1:]


def test_a_clean_store_reports_nothing_and_a_changed_blob_is_reported(fresh_registry: CargoholdServer) -> None:
    with httpx.Client(base_url=fresh_registry.url, timeout=30) as client:
        blobs = _push(client, 3)
    code, report, _ = scrub(fresh_registry)
    assert code == 0
    assert report["findings"] == []
    assert (report["run"]["checked"], report["run"]["problems"]) == (3, 0)
    assert report["run"]["bytes_checked"] == sum(map(len, blobs.values()))

    stored = fresh_registry.stored()
    where = stored.blobs()
    flipped, cut, gone = sorted(blobs)
    stored.write(where[flipped], _changed(blobs[flipped]))  # same size, other bytes
    stored.write(where[cut], blobs[cut][:1000])  # cut short
    if isinstance(stored, S3Blobs):
        stored.client.delete_object(Bucket=stored.bucket, Key=where[gone])
    else:
        os.unlink(where[gone])
    code, report, stderr = scrub(fresh_registry)
    assert code == 1
    found = {f["digest"]: f for f in report["findings"]}
    assert set(found) == {flipped, cut, gone}
    assert found[flipped]["problem"] == "corrupt"
    assert (found[flipped]["expected_size"], found[flipped]["found_size"]) == (3000, 3000)
    assert found[flipped]["found_digest"] == sha256(_changed(blobs[flipped]))
    assert (found[cut]["problem"], found[cut]["found_size"], found[cut]["found_digest"]) == \
        ("corrupt", 1000, sha256(blobs[cut][:1000]))
    assert (found[gone]["problem"], found[gone]["found_size"], found[gone]["found_digest"]) == ("missing", None, None)
    assert report["run"]["problems"] == 3
    assert f"stored blob {flipped} does not match its digest" in stderr  # logged at error level too
    assert f"stored blob {gone} is missing" in stderr
    # reported, not repaired: the bytes stay as they are, and pulls of the others go on
    assert sha256(b"".join(stored.read(where[flipped]))) == sha256(_changed(blobs[flipped]))

    # the bytes restored (from a backup): the next check clears the finding
    stored.write(where[flipped], blobs[flipped])
    code, report, _ = scrub(fresh_registry)
    assert {f["digest"] for f in report["findings"]} == {cut, gone}
    code, listed, _ = scrub(fresh_registry, "--report")
    assert {f["digest"] for f in listed["findings"]} == {cut, gone}
    assert [run["problems"] for run in listed["runs"]][:3] == [2, 3, 0]


def test_each_run_takes_the_next_sample_round_and_round(fresh_registry: CargoholdServer) -> None:
    with httpx.Client(base_url=fresh_registry.url, timeout=30) as client:
        blobs = _push(client, 5, size=100)
    stored = fresh_registry.stored()
    for digest, where in stored.blobs().items():
        stored.write(where, _changed(blobs[digest]))
    seen = []
    for _ in range(3):
        code, report, _ = scrub(fresh_registry, "--sample", "2")
        assert code == 1 and report["run"]["checked"] == 2
        seen.append(len(report["findings"]))
    assert seen == [2, 4, 5]  # 2 more each run, then round to the first again


def test_the_job_reports_a_corrupt_blob_and_readiness_stays(tmp_path: Path, setup: Setup) -> None:
    env = {**setup.env, "CARGOHOLD_SCRUB_INTERVAL_SECONDS": "1", "CARGOHOLD_SCRUB_SAMPLE_SIZE": "10"}
    with cargohold(tmp_path, "--workers", "2", env=env, database_url=setup.database_url) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        data = os.urandom(5000)
        digest = push_blob(client, REPO, data)
        stored = server.stored()
        stored.write(stored.blobs()[digest], _changed(data))
        deadline = time.monotonic() + 30
        while "does not match its digest" not in server.log():
            assert time.monotonic() < deadline, server.log()[-3000:]
            time.sleep(0.3)
        line = next(json.loads(line) for line in server.log().splitlines()
                    if "does not match its digest" in line)
        assert (line["level"], line["digest"], line["expected_size"], line["found_digest"]) == \
            ("error", digest, 5000, sha256(_changed(data)))
        assert client.get("/readyz").status_code == 200
        _, listed, _ = scrub(server, "--report")
        assert [(f["digest"], f["problem"]) for f in listed["findings"]] == [(digest, "corrupt")]
        assert listed["runs"][0]["started_by"] == "job"


def test_the_admin_api_lists_the_findings(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    fast = {"CARGOHOLD_PASSWORD_COST": "4"}
    with contextlib.redirect_stdout(None), pytest.MonkeyPatch.context() as patch:
        import io

        patch.setattr("sys.stdin", io.StringIO("root-password\n"))
        for name, value in fast.items():
            patch.setenv(name, value)
        assert main(["admin", "--data-dir", str(data_dir), "user", "add", "root", "--superuser",
                     "--password-stdin"]) == 0
        patch.setattr("sys.stdin", io.StringIO("alice-password\n"))
        assert main(["admin", "--data-dir", str(data_dir), "user", "add", "alice", "--password-stdin"]) == 0
    with cargohold(tmp_path, "--workers", "1", "--auth", "token", env=fast) as server:
        data = os.urandom(2000)
        token = httpx.get(f"{server.url}/auth/token", params={"service": "cargohold",
                                                             "scope": f"repository:{REPO}:pull,push"},
                          auth=("root", "root-password")).json()["token"]
        with httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
            digest = push_blob(client, REPO, data)
        Path(server.stored().blobs()[digest]).write_bytes(_changed(data))
        assert scrub(server)[0] == 1
        root = httpx.get(f"{server.url}/admin/v1/scrub", auth=("root", "root-password"))
        assert root.status_code == 200, root.text
        body = root.json()
        assert [(f["digest"], f["problem"], f["expected_size"], f["found_size"], f["found_digest"])
                for f in body["findings"]] == [(digest, "corrupt", 2000, 2000, sha256(_changed(data)))]
        # newest first: this run, then the job's at the server's start (before the push)
        assert [(run["started_by"], run["checked"], run["problems"]) for run in body["runs"]] == \
            [("command", 1, 1), ("job", 0, 0)]
        one = httpx.get(f"{server.url}/admin/v1/scrub", params={"runs": "1"}, auth=("root", "root-password"))
        assert [run["started_by"] for run in one.json()["runs"]] == ["command"]
        assert httpx.get(f"{server.url}/admin/v1/scrub", auth=("alice", "alice-password")).status_code == 403
        bad = httpx.get(f"{server.url}/admin/v1/scrub", params={"runs": "many"}, auth=("root", "root-password"))
        assert bad.status_code == 400


# the filesystem store's sweep


def _blob_path(server: CargoholdServer, data: bytes) -> Path:
    hexdigest = hashlib.sha256(data).hexdigest()
    return server.data_dir / "blobs" / "sha256" / hexdigest[:2] / hexdigest


def _orphan(server: CargoholdServer, age: float) -> tuple[Path, bytes]:
    """A blob file that no row names (as a crash leaves one), last changed ``age`` seconds ago."""
    data = os.urandom(1234)
    path = _blob_path(server, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    when = time.time() - age
    os.utime(path, (when, when))
    return path, data


def _age(path: Path, age: float) -> None:
    when = time.time() - age
    os.utime(path, (when, when))


@contextlib.contextmanager
def _filesystem_server(tmp: Path, **env: str) -> Iterator[CargoholdServer]:
    server = CargoholdServer(tmp / "data", free_port(), ["--workers", "1"], env).start()
    try:
        yield server
    finally:
        server.stop()


def _crash_after_placing(tmp: Path, data: bytes) -> CargoholdServer:
    """Push ``data`` to a server that kills itself (SIGKILL) once the bytes are placed, before their row."""
    with _filesystem_server(tmp, CARGOHOLD_CRASH_AT="blob-placed") as server, \
            httpx.Client(base_url=server.url, timeout=30) as client, pytest.raises(httpx.HTTPError):
        r = client.post(f"/v2/{REPO}/blobs/uploads/", params={"digest": sha256(data)}, content=data)
        pytest.fail(f"the server answered {r.status_code} instead of dying")
    return server


def _metadata(server: CargoholdServer) -> sqlite3.Connection:
    return sqlite3.connect(server.data_dir / "metadata.db")


def test_the_sweep_removes_orphans_past_the_grace_only(tmp_path: Path) -> None:
    with _filesystem_server(tmp_path) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        data = os.urandom(2000)
        kept = push_blob(client, REPO, data)
        _age(_blob_path(server, data), 2 * HOUR)  # recorded: old as it is, it stays
        old, _ = _orphan(server, 2 * HOUR)
        young, _ = _orphan(server, 10)
        stray = server.data_dir / "blobs" / "sha256" / "not-a-blob"
        stray.write_bytes(b"someone else's")
        _age(stray, 2 * HOUR)
        code, report, _ = scrub(server, CARGOHOLD_STORAGE_FILESYSTEM_ORPHAN_GRACE_SECONDS=str(HOUR))
        assert code == 0 and report["run"]["orphans_removed"] == 1
        assert not old.exists()
        assert young.exists() and stray.exists()
        assert client.get(f"/v2/{REPO}/blobs/{kept}").content == data
        assert report["run"]["checked"] == 1  # the orphans have no row: only the pushed blob is re-hashed


def test_the_sweep_runs_as_a_job(tmp_path: Path) -> None:
    with _filesystem_server(tmp_path, CARGOHOLD_STORAGE_FILESYSTEM_ORPHAN_GRACE_SECONDS="1") as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        data = os.urandom(2000)
        digest = push_blob(client, REPO, data)
        _age(_blob_path(server, data), HOUR)
        orphan, _ = _orphan(server, HOUR)
        deadline = time.monotonic() + 20
        while orphan.exists():
            assert time.monotonic() < deadline, "the sweep job did not remove the orphan"
            time.sleep(0.3)
        assert client.get(f"/v2/{REPO}/blobs/{digest}").content == data


def test_a_crash_between_placing_and_recording(tmp_path: Path) -> None:
    """Killed once the bytes are placed: the commit is in flight (its digest on its upload row), so the
    sweep keeps the file however old, and the retried push completes. Once no row names the file (the
    database restored from a backup older than the push), the sweep removes it and a push works again."""
    data = os.urandom(300_000)
    digest = sha256(data)
    grace = {"CARGOHOLD_STORAGE_FILESYSTEM_ORPHAN_GRACE_SECONDS": str(HOUR)}
    server = _crash_after_placing(tmp_path, data)
    placed = _blob_path(server, data)
    assert placed.exists()
    _age(placed, 2 * HOUR)
    code, report, _ = scrub(server, **grace)
    assert report["run"]["orphans_removed"] == 0 and placed.exists()
    with _filesystem_server(tmp_path) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        assert push_blob(client, REPO, data) == digest
        assert client.get(f"/v2/{REPO}/blobs/{digest}").content == data

    other = os.urandom(200_000)
    (tmp_path / "again").mkdir()
    server = _crash_after_placing(tmp_path / "again", other)
    placed = _blob_path(server, other)
    with contextlib.closing(_metadata(server)) as db, db:
        assert db.execute("SELECT COUNT(*) FROM uploads WHERE digest = ? AND completed = 0",
                          (sha256(other),)).fetchone() == (1,)
        db.execute("DELETE FROM uploads")  # the backup's state: no upload, no blob row
    _age(placed, 2 * HOUR)
    code, report, _ = scrub(server, **grace)
    assert report["run"]["orphans_removed"] == 1 and not placed.exists()
    with _filesystem_server(tmp_path / "again") as server, httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.head(f"/v2/{REPO}/blobs/{sha256(other)}").status_code == 404
        assert push_blob(client, REPO, other) == sha256(other)
        assert client.get(f"/v2/{REPO}/blobs/{sha256(other)}").content == other
    server.assert_storage_consistent()
