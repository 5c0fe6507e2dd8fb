"""A server killed at each step of a blob commit: the retried request answers 201 with the
same digest, the blob reads back, and after a purge nothing is left that no row names.

A real ``cargohold serve`` kills itself (SIGKILL: nothing flushed, nothing cleaned up) at
the step named by ``CARGOHOLD_CRASH_AT``; it is then restarted without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cargohold.metadata import open_metadata_store
from cargohold.service.uploads import Uploads
from cargohold.storage import open_blob_store
from tests.support.servers import CargoholdServer, free_port

#: the crash points of a commit, in order (cargohold.service.uploads)
STEPS = ["upload-synced", "commit-begun", "blob-placed", "blob-recorded", "upload-completed"]
REPO = "crash/app"


def _server(tmp: Path, env: dict[str, str]) -> CargoholdServer:
    server = CargoholdServer(tmp / "data", free_port(), ["--workers", "1"], env)
    return server.start()


@contextlib.contextmanager
def _running(tmp: Path, **env: str) -> Iterator[CargoholdServer]:
    server = _server(tmp, env)
    try:
        yield server
    finally:
        server.stop()


def _client(server: CargoholdServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30.0)


def _crashes(send: Callable[[], httpx.Response]) -> None:
    with pytest.raises(httpx.HTTPError):
        response = send()
        pytest.fail(f"the server answered {response.status_code} instead of dying")


def _purge(data_dir: Path) -> int:
    """The upload purge with a max age of 0, on the server's data (the server is stopped)."""
    time.sleep(1.1)  # rows store whole seconds: let every row be older than "now"

    async def run() -> int:
        meta = open_metadata_store(f"sqlite://{data_dir}/metadata.db")
        try:
            return await Uploads(open_blob_store("filesystem", {"root": str(data_dir)}), meta).purge(0)
        finally:
            await meta.close()

    return asyncio.run(run())


def _assert_nothing_stray(data_dir: Path) -> None:
    with contextlib.closing(sqlite3.connect(data_dir / "metadata.db")) as db:
        upload_rows = {row[0] for row in db.execute("SELECT id FROM uploads")}
        blob_rows = {row[0] for row in db.execute("SELECT digest FROM blobs")}
    assert os.listdir(data_dir / "uploads") == [], "upload files left after the purge"
    assert upload_rows == set(), "upload rows left after the purge"
    files = {f"{p.parts[-3]}:{p.name}" for p in (data_dir / "blobs").glob("*/*/*")}
    assert files <= blob_rows, f"blob files without a row: {files - blob_rows}"
    for path in (data_dir / "blobs").glob("*/*/*"):
        assert hashlib.new(path.parts[-3], path.read_bytes()).hexdigest() == path.name


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("step", STEPS)
def test_chunked_upload_final_put_retried_after_a_crash(tmp_path: Path, step: str) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    digest = _digest(data)
    with _running(tmp_path, CARGOHOLD_CRASH_AT=step) as server, _client(server) as client:
        location = client.post(f"/v2/{REPO}/blobs/uploads/").headers["location"]
        r = client.patch(location, content=data[:-7], headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 202
        location = r.headers["location"]
        _crashes(lambda: client.put(location, params={"digest": digest}, content=data[-7:]))
    with _running(tmp_path) as server, _client(server) as client:
        # the client resends the same final request, body included
        r = client.put(location, params={"digest": digest}, content=data[-7:])
        assert r.status_code == 201, r.text
        assert r.headers["docker-content-digest"] == digest
        assert client.get(f"/v2/{REPO}/blobs/{digest}").content == data
        # and once more, as a client whose answer got lost again would
        again = client.put(location, params={"digest": digest}, content=data[-7:])
        assert again.status_code == 201 and again.headers["docker-content-digest"] == digest
        # the session is over for anything but that retry
        assert client.get(location).status_code == 404
        assert client.put(location, params={"digest": _digest(b"other")}).status_code == 404
    _purge(server.data_dir)
    _assert_nothing_stray(server.data_dir)
    with _running(tmp_path) as server, _client(server) as client:
        assert client.get(f"/v2/{REPO}/blobs/{digest}").content == data


@pytest.mark.parametrize("step", STEPS)
def test_monolithic_upload_retried_after_a_crash(tmp_path: Path, step: str) -> None:
    """A retried POST ?digest= is a new upload; it re-uses a blob placed but not recorded."""
    data = os.urandom(1024 * 1024 + 3)
    digest = _digest(data)
    url = f"/v2/{REPO}/blobs/uploads/"
    with _running(tmp_path, CARGOHOLD_CRASH_AT=step) as server, _client(server) as client:
        _crashes(lambda: client.post(url, params={"digest": digest}, content=data))
    with _running(tmp_path) as server, _client(server) as client:
        r = client.post(url, params={"digest": digest}, content=data)
        assert r.status_code == 201, r.text
        assert r.headers["docker-content-digest"] == digest
        assert client.get(f"/v2/{REPO}/blobs/{digest}").content == data
    _purge(server.data_dir)
    _assert_nothing_stray(server.data_dir)


@pytest.mark.parametrize("step", STEPS)
def test_a_crashed_commit_never_retried_is_completed_or_removed_by_the_purge(tmp_path: Path, step: str) -> None:
    data = os.urandom(200_000)
    digest = _digest(data)
    with _running(tmp_path, CARGOHOLD_CRASH_AT=step) as server, _client(server) as client:
        _crashes(lambda: client.post(f"/v2/{REPO}/blobs/uploads/", params={"digest": digest}, content=data))
    _purge(server.data_dir)
    _assert_nothing_stray(server.data_dir)
    with _running(tmp_path) as server, _client(server) as client:
        found = client.get(f"/v2/{REPO}/blobs/{digest}")
        if step == "upload-synced":  # the digest was not recorded yet: the upload is dropped
            assert found.status_code == 404
            assert server.blob_files() == {}
        else:  # verified before the crash: completed
            assert found.status_code == 200 and found.content == data
