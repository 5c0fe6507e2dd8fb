"""The audit log on a running server: pulls written off the hot path (within a second, and at shutdown),
a commit killed part-way leaves no entry of it, and the retention job keeps what webhooks still need."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import httpx
import pytest

from cargohold.config import ConfigError, load_config
from tests.api.helpers import OCI_MANIFEST, image_manifest, put_manifest, sha256
from tests.support.servers import CargoholdServer, free_port

#: the crash points of a blob commit, in order (cargohold.service.uploads)
STEPS = ["upload-synced", "commit-begun", "blob-placed", "blob-recorded", "upload-completed"]


@contextlib.contextmanager
def running(tmp: Path, *args: str, **env: str) -> Iterator[CargoholdServer]:
    server = CargoholdServer(tmp / "data", free_port(), ["--workers", "1", *args], env).start()
    try:
        yield server
    finally:
        server.stop()


def rows(data_dir: Path, where: str = "1 = 1") -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(data_dir / "metadata.db")) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(f"SELECT * FROM events WHERE {where} ORDER BY seq")]


def wait_for(check: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)


def test_manifest_gets_are_recorded_within_a_second_heads_are_not(tmp_path: Path) -> None:
    with running(tmp_path) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        raw = image_manifest(client, "pulls/app", layers=1)
        assert put_manifest(client, "pulls/app", "v1", raw, OCI_MANIFEST).status_code == 201
        head = client.head("/v2/pulls/app/manifests/v1")
        by_tag = client.get("/v2/pulls/app/manifests/v1", headers={"user-agent": "puller/1"})
        by_digest = client.get(f"/v2/pulls/app/manifests/{sha256(raw)}")
        blob = json.loads(raw)["layers"][0]["digest"]
        assert client.get(f"/v2/pulls/app/blobs/{blob}").status_code == 200
        assert (head.status_code, by_tag.status_code, by_digest.status_code) == (200, 200, 200)
        started = time.monotonic()
        wait_for(lambda: len(rows(server.data_dir, "action = 'manifest.pull'")) == 2)
        assert time.monotonic() - started < 2.0  # written within about a second, the server still running
        first, second = rows(server.data_dir, "action = 'manifest.pull'")
        assert (first["tag"], first["digest"], first["media_type"], first["size"]) == (
            "v1", sha256(raw), OCI_MANIFEST, len(raw))
        assert (first["request_id"], first["user_agent"], first["address"], first["method"]) == (
            by_tag.headers["x-request-id"], "puller/1", "127.0.0.1", "GET")
        assert (second["tag"], second["request_id"]) == (None, by_digest.headers["x-request-id"])
        assert first["actor"] is None and first["actor_kind"] == "anonymous"
        # a HEAD is no pull, and blob GETs are not recorded unless asked for
        assert head.headers["x-request-id"] not in {r["request_id"] for r in rows(server.data_dir)}
        assert rows(server.data_dir, "action = 'blob.pull'") == []


def test_blob_pulls_when_asked_and_what_is_held_is_written_at_shutdown(tmp_path: Path) -> None:
    with running(tmp_path, CARGOHOLD_AUDIT_RECORD_BLOB_PULLS="true") as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        raw = image_manifest(client, "pulls/app", layers=1)
        blob = json.loads(raw)["layers"][0]["digest"]
        whole = client.get(f"/v2/pulls/app/blobs/{blob}")
        client.get(f"/v2/pulls/app/blobs/{blob}", headers={"range": "bytes=1-2"})  # a later range: the same pull
        client.head(f"/v2/pulls/app/blobs/{blob}")
        wait_for(lambda: len(rows(server.data_dir, "action = 'blob.pull'")) == 1)
        [pulled] = rows(server.data_dir, "action = 'blob.pull'")
        assert (pulled["digest"], pulled["size"], pulled["request_id"]) == (
            blob, len(whole.content), whole.headers["x-request-id"])
        # pulls stopped by SIGTERM at once are written on the way out, not lost; identical ones are one
        # entry with their count and the first one's request id
        ids = [client.get("/v2/pulls/app/blobs/" + blob, headers={"user-agent": "again/1"}).headers["x-request-id"]
               for _ in range(3)]
        server.stop()
    [again] = rows(server.data_dir, "action = 'blob.pull' AND user_agent = 'again/1'")
    assert (again["request_id"], json.loads(again["detail"])) == (ids[0], {"count": 3, "until": ANY})


@pytest.mark.parametrize("step", STEPS)
def test_a_blob_commit_killed_part_way_is_recorded_once_when_it_completes(tmp_path: Path, step: str) -> None:
    data = os.urandom(100_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with running(tmp_path, CARGOHOLD_CRASH_AT=step) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        location = client.post("/v2/crash/app/blobs/uploads/").headers["location"]
        with pytest.raises(httpx.HTTPError):
            client.put(location, params={"digest": digest}, content=data)
    committed = step == "upload-completed"  # killed after the commit: its entries are in, once
    pushed = rows(server.data_dir, "action IN ('blob.push', 'repository.create')")
    assert [r["action"] for r in pushed] == (["repository.create", "blob.push"] if committed else [])
    with running(tmp_path) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        retried = client.put(location, params={"digest": digest}, content=data)
        assert retried.status_code == 201, retried.text
    pushed = rows(server.data_dir, "action IN ('blob.push', 'repository.create')")
    assert [(r["action"], r["digest"]) for r in pushed] == [("repository.create", None), ("blob.push", digest)]


def _old_event(db: sqlite3.Connection, at: float) -> int:
    cursor = db.execute(
        "INSERT INTO events (id, at, action, result, actor, actor_kind, address, user_agent, request_id, host,"
        " method, repository, detail) VALUES (?, ?, 'manifest.push', 'ok', 'alice', 'user', '', '', '', '', '',"
        " 'old/app', '{}')", (str(uuid.uuid4()), at))
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def test_retention_purges_old_entries_but_not_those_a_webhook_still_waits_for(tmp_path: Path) -> None:
    with running(tmp_path) as server:
        pass
    now = time.time()
    with contextlib.closing(sqlite3.connect(server.data_dir / "metadata.db")) as db, db:
        old = _old_event(db, now - 3 * 86400)
        waiting = _old_event(db, now - 3 * 86400)
        db.execute("INSERT INTO event_deliveries (event_seq, endpoint, state, attempts, next_attempt_at)"
                   " VALUES (?, 'hook', 'pending', 3, ?)", (waiting, now))
        young = _old_event(db, now - 0.5 * 86400)
    with running(tmp_path, CARGOHOLD_AUDIT_RETENTION_DAYS="1") as server:
        wait_for(lambda: old not in {r["seq"] for r in rows(server.data_dir)}, 20)
        assert {waiting, young} <= {r["seq"] for r in rows(server.data_dir)}
    # 0 keeps everything
    with running(tmp_path, CARGOHOLD_AUDIT_RETENTION_DAYS="0") as server:
        with contextlib.closing(sqlite3.connect(server.data_dir / "metadata.db")) as db, db:
            ancient = _old_event(db, 1000.0)
        time.sleep(1.0)
        assert ancient in {r["seq"] for r in rows(server.data_dir)}


def test_the_audit_section_from_file_environment_and_its_refusals(tmp_path: Path) -> None:
    assert (load_config(None, {}, {}).audit.retention_days, load_config(None, {}, {}).audit.record_blob_pulls) == (
        90.0, False)
    config_file = tmp_path / "c.yaml"
    config_file.write_text("audit:\n  retention_days: 30\n  record_blob_pulls: true\n")
    loaded = load_config(str(config_file), {}, {"CARGOHOLD_AUDIT_RETENTION_DAYS": "7"})
    assert (loaded.audit.retention_days, loaded.audit.record_blob_pulls) == (7.0, True)  # the environment wins
    with pytest.raises(ConfigError, match="retention_days must not be negative"):
        load_config(None, {}, {"CARGOHOLD_AUDIT_RETENTION_DAYS": "-1"})
    with pytest.raises(ConfigError, match="audit.record_blob_pulls"):
        load_config(None, {}, {"CARGOHOLD_AUDIT_RECORD_BLOB_PULLS": "sometimes"})
