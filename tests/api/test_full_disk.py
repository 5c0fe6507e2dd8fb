"""A registry whose disk fills up: writes answer 507 INSUFFICIENT_STORAGE at once, nothing
is left behind, reads go on, and writes work again as soon as there is space (no restart).

The data directory (blobs, uploads and metadata.db) is on a real small filesystem (tmpfs,
and ext4 on a loop device); a filler file outside the data directory takes the space
that is to be missing. Needs root.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cargohold.metadata import open_metadata_store
from cargohold.service.uploads import Uploads
from cargohold.storage import open_blob_store
from tests.support.servers import SRC, CargoholdServer, free_port

REPO = "full/app"


@pytest.fixture(params=["tmpfs", "ext4"])
def disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A small real filesystem: an 8 MiB tmpfs, or a 16 MiB ext4 image on a loop device."""
    if os.geteuid() != 0:
        pytest.skip("mounting a filesystem needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    if request.param == "tmpfs":
        command = ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)]
    else:
        image = tmp_path / "disk.img"
        with open(image, "wb") as file:
            file.truncate(16 * 1024 * 1024)
        # -m 0: no blocks kept for root (the server and this test run as root here)
        made = subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], capture_output=True)
        if made.returncode != 0:
            pytest.skip(f"cannot make an ext4 image: {made.stderr.decode().strip()}")
        command = ["mount", "-o", "loop", str(image), str(mount)]
    done = subprocess.run(command, capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a {request.param}: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.fixture
def server(disk: Path) -> Iterator[CargoholdServer]:
    # the data directory is the small filesystem itself; the server's log is kept beside it
    server = CargoholdServer(disk, free_port(), ["--workers", "1"])
    server.start()
    try:
        yield server
    finally:
        server.stop()


def fill(disk: Path, leave: int = 0) -> Path:
    """Take all the free space of ``disk`` but ``leave`` bytes."""
    filler = disk / "filler"
    block = b"\1" * (64 * 1024)
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while True:
            os.write(fd, block)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    size = filler.stat().st_size
    os.truncate(filler, max(size - leave, 0))
    return filler


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push(client: httpx.Client, data: bytes) -> httpx.Response:
    return client.post(f"/v2/{REPO}/blobs/uploads/", params={"digest": sha256(data)}, content=data)


def assert_out_of_space(response: httpx.Response) -> None:
    assert response.status_code == 507, response.text
    error = response.json()["errors"][0]
    assert error["code"] == "INSUFFICIENT_STORAGE"
    assert error["message"].startswith("registry out of space")


def assert_nothing_left(server: CargoholdServer, *, sessions: bool = True) -> None:
    assert server.upload_files() == set()
    if sessions:
        assert server.upload_rows() == set()
    for folder, subfolders, files in os.walk(server.data_dir / "blobs"):
        depth = len(Path(folder).relative_to(server.data_dir / "blobs").parts)
        assert depth < 2 or files, f"empty blob folder left: {folder}"
        assert depth >= 2 or subfolders or folder == str(server.data_dir / "blobs"), folder
    for digest, path in server.blob_files().items():
        assert sha256(Path(path).read_bytes()) == digest, f"blob {digest} holds other bytes"
    if sessions:
        with contextlib.closing(sqlite3.connect(server.data_dir / "metadata.db")) as db:
            recorded = {row[0] for row in db.execute("SELECT digest FROM blobs")}
        assert set(server.blob_files()) <= recorded, "blob files without a row"
    assert "Traceback" not in server.log()


def manifest_for(client: httpx.Client, config: bytes, note: str = "") -> bytes:
    """A manifest of ``config`` (pushed here, if not there yet) with a ``note`` annotation."""
    if client.head(f"/v2/{REPO}/blobs/{sha256(config)}").status_code != 200:
        assert push(client, config).status_code == 201
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config),
                   "size": len(config)},
        "layers": [],
        "annotations": {"note": note},
    }
    return json.dumps(manifest).encode()


def put_manifest(client: httpx.Client, tag: str, raw: bytes) -> httpx.Response:
    return client.put(
        f"/v2/{REPO}/manifests/{tag}", content=raw,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )


def test_blob_bytes_on_a_full_disk(server: CargoholdServer, disk: Path) -> None:
    kept = os.urandom(300_000)
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        assert push(client, kept).status_code == 201
        raw = manifest_for(client, b'{"config": 1}')
        assert put_manifest(client, "v1", raw).status_code == 201
        filler = fill(disk, leave=1024 * 1024)
        big = os.urandom(3 * 1024 * 1024)

        assert_out_of_space(push(client, big))  # monolithic
        location = client.post(f"/v2/{REPO}/blobs/uploads/").headers["location"]
        assert_out_of_space(client.patch(location, content=big))  # chunked: the session is cancelled
        assert client.get(location).status_code == 404
        location = client.post(f"/v2/{REPO}/blobs/uploads/").headers["location"]
        assert_out_of_space(client.put(location, params={"digest": sha256(big)}, content=big))
        assert_nothing_left(server)
        assert "registry out of space" in server.log()  # a line for the operator

        # reads go on
        assert client.get(f"/v2/{REPO}/blobs/{sha256(kept)}").content == kept
        assert client.head(f"/v2/{REPO}/blobs/{sha256(kept)}").status_code == 200
        assert client.get(f"/v2/{REPO}/manifests/v1").content == raw
        assert client.get(f"/v2/{REPO}/tags/list").json()["tags"] == ["v1"]

        # space returns: the same push works, no restart
        filler.unlink()
        assert push(client, big).status_code == 201
        assert client.get(f"/v2/{REPO}/blobs/{sha256(big)}").content == big
    assert_nothing_left(server)


def test_metadata_database_on_a_full_disk(server: CargoholdServer, disk: Path) -> None:
    """SQLite's own writes fail (SQLITE_FULL): the same 507, reads and later writes unharmed."""
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        raw = manifest_for(client, b'{"config": 2}')
        assert put_manifest(client, "v1", raw).status_code == 201
        filler = fill(disk)
        # each manifest adds pages to the database's log until it cannot grow
        failed = None
        for number in range(400):
            r = put_manifest(client, f"t{number}", manifest_for(client, b'{"config": 2}', f"{number}" + "x" * 60_000))
            if r.status_code != 201:
                failed = r
                break
        assert failed is not None, "the database never ran out of space"
        assert_out_of_space(failed)
        # a new session's row cannot be written either (a few may still fit in the log's last block)
        opened = []
        for _ in range(50):
            r = client.post(f"/v2/{REPO}/blobs/uploads/")
            if r.status_code != 202:
                break
            opened.append(r.headers["location"])
        assert_out_of_space(r)
        assert server.upload_files() == server.upload_rows()  # the refused session's file is gone
        assert client.get(f"/v2/{REPO}/manifests/v1").content == raw

        filler.unlink()
        for location in opened:
            assert client.delete(location).status_code == 204
        assert put_manifest(client, "after", raw).status_code == 201
        assert push(client, os.urandom(100_000)).status_code == 201
    assert_nothing_left(server)


def test_the_client_stops_at_once_and_says_the_registry_is_out_of_space(
    server: CargoholdServer, disk: Path, tmp_path: Path
) -> None:
    layer = tmp_path / "layer.bin"
    layer.write_bytes(os.urandom(2 * 1024 * 1024))
    fill(disk, leave=512 * 1024)
    env = {**os.environ, "PYTHONPATH": str(SRC), "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "cargohold.cli.main", "blob", "put", f"{server.host}/{REPO}", str(layer)],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert done.returncode == 1
    assert "registry out of space" in done.stderr
    assert "Traceback" not in done.stderr
    refused = [line for line in server.log().splitlines() if '"status": 507' in line]
    assert len(refused) == 1, f"the client tried again: {refused}"
    assert_nothing_left(server)


@pytest.mark.parametrize("spare_pages", [0, 1, 2, 3])
def test_space_running_out_while_a_blob_is_committed(server: CargoholdServer, disk: Path, spare_pages: int) -> None:
    """The bytes are in, the disk fills, then the final PUT: whichever step of the commit runs
    out (the session's digest, the blob's folder, its row), no upload bytes or empty folders
    are left; a blob placed before the database filled up is completed by the next push or
    the purge."""
    data = os.urandom(64 * 4096)
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        location = client.post(f"/v2/{REPO}/blobs/uploads/").headers["location"]
        r = client.patch(location, content=data)
        assert r.status_code == 202
        filler = fill(disk, leave=spare_pages * 4096)
        r = client.put(r.headers["location"], params={"digest": sha256(data)})
        if r.status_code != 201:
            assert_out_of_space(r)
        assert server.upload_files() == set()
        with contextlib.closing(sqlite3.connect(server.data_dir / "metadata.db")) as db:
            pending = db.execute("SELECT digest FROM uploads WHERE completed = 0").fetchall()
        assert pending in ([], [(sha256(data),)]), pending  # only a verified, placed blob is kept
        assert_nothing_left(server, sessions=False)
        filler.unlink()
        assert push(client, data).status_code == 201
        assert client.get(f"/v2/{REPO}/blobs/{sha256(data)}").content == data
    server.stop()
    asyncio.run(purge(server.data_dir))
    assert_nothing_left(server)


async def purge(data_dir: Path) -> None:
    meta = open_metadata_store(f"sqlite://{data_dir}/metadata.db")
    try:
        # every session so far: rows store whole seconds, so the cutoff is 2 s ahead (as a max age of 0 after a wait)
        await Uploads(open_blob_store("filesystem", {"root": str(data_dir)}), meta).purge(-2)
    finally:
        await meta.close()
