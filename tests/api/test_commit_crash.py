"""A server killed at each step of a blob commit: the retried request answers 201 with the
same digest, the blob reads back, and after a purge nothing is left that no row names.

A real ``cargohold serve`` kills itself (SIGKILL: nothing flushed, nothing cleaned up) at
the step named by ``CARGOHOLD_CRASH_AT``; it is then restarted without it. On SQLite + filesystem and
on PostgreSQL + S3 (where "nothing stray" also means no object that no row names, and no blob row
whose object is missing).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cargohold.metadata import open_metadata_store
from cargohold.service.uploads import Uploads
from cargohold.storage import open_blob_store
from tests.support.backends import Setup
from tests.support.postgres import query
from tests.support.servers import CargoholdServer, free_port
from tests.support.stored import digest_of

#: the crash points of a commit, in order (cargohold.service.uploads)
STEPS = ["upload-synced", "commit-begun", "blob-placed", "blob-recorded", "upload-completed"]
REPO = "crash/app"


def _server(tmp: Path, setup: Setup, env: dict[str, str]) -> CargoholdServer:
    server = CargoholdServer(tmp / "data", free_port(), ["--workers", "1"], {**setup.env, **env},
                             database_url=setup.database_url)
    return server.start()


@contextlib.contextmanager
def _running(tmp: Path, setup: Setup, **env: str) -> Iterator[CargoholdServer]:
    server = _server(tmp, setup, env)
    try:
        yield server
    finally:
        server.stop()


def _metadata_url(server: CargoholdServer) -> str:
    return server.database_url or f"sqlite://{server.data_dir}/metadata.db"


def _client(server: CargoholdServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30.0)


def _crashes(send: Callable[[], httpx.Response]) -> None:
    with pytest.raises(httpx.HTTPError):
        response = send()
        pytest.fail(f"the server answered {response.status_code} instead of dying")


def _purge(server: CargoholdServer) -> int:
    """The upload purge, on the server's data (the server is stopped), of every session so far: rows store whole
    seconds, so its cutoff is 2 s ahead (as a max age of 0 after a wait)."""
    prefix = "CARGOHOLD_STORAGE_S3_"
    s3 = {key.removeprefix(prefix).lower(): value for key, value in server.env.items() if key.startswith(prefix)}

    async def run() -> int:
        meta = open_metadata_store(_metadata_url(server))
        try:
            blobs = open_blob_store("s3", s3, meta) if s3 else open_blob_store(
                "filesystem", {"root": str(server.data_dir)})
            return await Uploads(blobs, meta).purge(-2)
        finally:
            await meta.close()

    return asyncio.run(run())


def _assert_nothing_stray(server: CargoholdServer) -> None:
    url = _metadata_url(server)
    upload_rows = {row[0] for row in query(url, "SELECT id FROM uploads")}
    blob_rows = {row[0] for row in query(url, "SELECT digest FROM blobs")}
    stored = server.stored()
    assert stored.uploads() == set(), "uploads left in the store after the purge"
    assert upload_rows == set(), "upload rows left after the purge"
    blobs = stored.blobs()
    assert set(blobs) == blob_rows, f"blobs stored without a row {set(blobs) - blob_rows}, rows without bytes" \
                                    f" {blob_rows - set(blobs)}"
    for digest, where in blobs.items():
        assert digest_of(stored, where, digest.split(":")[0]) == digest
    assert stored.strays() == [], "stored without a record"


def _wait_for_the_lock_to_lapse(server: CargoholdServer, location: str) -> None:
    """On S3 an upload's lock is a lease in the database: the killed server's lapses after
    ``cargohold.storage.s3.LOCK_SECONDS``, and until then a retry is refused as in progress. Its expiry is
    moved into the past here, as that wait would leave it (the metadata stores' contract suite checks that a
    lapsed lease is taken over)."""
    name = "upload:" + location.split("?")[0].rsplit("/", 1)[1]
    query(_metadata_url(server), "UPDATE job_leases SET expires_at = ? WHERE name = ?", (int(time.time()) - 1, name))


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("step", STEPS)
def test_chunked_upload_final_put_retried_after_a_crash(tmp_path: Path, setup: Setup, step: str) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    digest = _digest(data)
    with _running(tmp_path, setup, CARGOHOLD_CRASH_AT=step) as server, _client(server) as client:
        location = client.post(f"/v2/{REPO}/blobs/uploads/").headers["location"]
        r = client.patch(location, content=data[:-7], headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 202
        location = r.headers["location"]
        _crashes(lambda: client.put(location, params={"digest": digest}, content=data[-7:]))
    _wait_for_the_lock_to_lapse(server, location)
    with _running(tmp_path, setup) as server, _client(server) as client:
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
    _purge(server)
    _assert_nothing_stray(server)
    with _running(tmp_path, setup) as server, _client(server) as client:
        assert client.get(f"/v2/{REPO}/blobs/{digest}").content == data


@pytest.mark.parametrize("step", STEPS)
def test_monolithic_upload_retried_after_a_crash(tmp_path: Path, setup: Setup, step: str) -> None:
    """A retried POST ?digest= is a new upload; it re-uses a blob placed but not recorded."""
    data = os.urandom(1024 * 1024 + 3)
    digest = _digest(data)
    url = f"/v2/{REPO}/blobs/uploads/"
    with _running(tmp_path, setup, CARGOHOLD_CRASH_AT=step) as server, _client(server) as client:
        _crashes(lambda: client.post(url, params={"digest": digest}, content=data))
    with _running(tmp_path, setup) as server, _client(server) as client:
        r = client.post(url, params={"digest": digest}, content=data)
        assert r.status_code == 201, r.text
        assert r.headers["docker-content-digest"] == digest
        assert client.get(f"/v2/{REPO}/blobs/{digest}").content == data
    _purge(server)
    _assert_nothing_stray(server)


@pytest.mark.parametrize("step", STEPS)
def test_a_crashed_commit_never_retried_is_completed_or_removed_by_the_purge(
        tmp_path: Path, setup: Setup, step: str) -> None:
    data = os.urandom(200_000)
    digest = _digest(data)
    with _running(tmp_path, setup, CARGOHOLD_CRASH_AT=step) as server, _client(server) as client:
        _crashes(lambda: client.post(f"/v2/{REPO}/blobs/uploads/", params={"digest": digest}, content=data))
    _purge(server)
    _assert_nothing_stray(server)
    with _running(tmp_path, setup) as server, _client(server) as client:
        found = client.get(f"/v2/{REPO}/blobs/{digest}")
        if step == "upload-synced":  # the digest was not recorded yet: the upload is dropped
            assert found.status_code == 404
            assert server.blob_files() == {}
        else:  # verified before the crash: completed
            assert found.status_code == 200 and found.content == data
