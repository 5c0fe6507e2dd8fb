"""A server on S3 killed (SIGKILL) at each step of a chunked upload and its commit: afterwards every
blob row names an object that holds its digest's bytes; once the upload purge and the store's sweep
have run, no object or multipart upload is left that no row names; the blob can be pushed again.
The sweep also runs as the server's periodic job."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cargohold.metadata import open_metadata_store
from cargohold.service.uploads import Uploads
from cargohold.storage import open_blob_store
from cargohold.storage.s3 import S3BlobStore
from tests.support.backends import s3_env
from tests.support.seaweedfs import BUCKET, SeaweedFS
from tests.support.servers import CargoholdServer, free_port

from .helpers import sha256

MiB = 1024 * 1024
REPO = "crash/s3"
#: the crash points of a chunked upload on S3, in order: the PATCH (cargohold.storage.s3), then the
#: final PUT (cargohold.service.uploads and cargohold.storage.s3)
STEPS = ["s3-multipart-begun", "s3-tail-written", "upload-synced", "commit-begun", "s3-completed", "s3-claimed",
         "blob-placed", "blob-recorded", "upload-completed"]


@contextlib.contextmanager
def _running(tmp: Path, env: dict[str, str]) -> Iterator[CargoholdServer]:
    server = CargoholdServer(tmp / "data", free_port(), ["--workers", "1"], env).start()
    try:
        yield server
    finally:
        server.stop()


def _options(env: dict[str, str]) -> dict[str, Any]:
    start = "CARGOHOLD_STORAGE_S3_"
    return {key[len(start):].lower(): value for key, value in env.items() if key.startswith(start)}


def _objects(seaweedfs: SeaweedFS, prefix: str) -> tuple[dict[str, bytes], list[str]]:
    """Every object under ``prefix`` with its bytes, and the keys of its multipart uploads."""
    client = seaweedfs.client()
    objects = {key: client.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in seaweedfs.keys(prefix)}
    uploads = client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", [])
    return objects, [str(item["Key"]) for item in uploads]


def _rows(data_dir: Path) -> tuple[set[str], dict[str, str], set[str]]:
    """The blob rows' digests, the store's digest -> key rows, and its upload rows."""
    with contextlib.closing(sqlite3.connect(data_dir / "metadata.db")) as db:
        blobs = {str(row[0]) for row in db.execute("SELECT digest FROM blobs")}
        keys = {str(row[0]): str(row[1]) for row in db.execute("SELECT digest, key FROM store_blobs")}
        uploads = {str(row[0]) for row in db.execute("SELECT upload_id FROM store_uploads")}
    return blobs, keys, uploads


def _assert_every_blob_row_holds_its_bytes(seaweedfs: SeaweedFS, data_dir: Path, prefix: str) -> None:
    objects, _ = _objects(seaweedfs, prefix)
    blobs, keys, _ = _rows(data_dir)
    for digest in blobs:
        assert digest in keys, f"blob row {digest} names no object"
        assert keys[digest] in objects, f"blob row {digest}: its object {keys[digest]} is missing"
        algorithm, _, hexdigest = digest.partition(":")
        assert hashlib.new(algorithm, objects[keys[digest]]).hexdigest() == hexdigest, f"{digest}: wrong bytes"


def _purge_and_sweep(env: dict[str, str], data_dir: Path) -> None:
    """The upload purge and the sweep, as the jobs run them, the server stopped, of everything so far: rows and
    listings name whole seconds, so their cutoffs are 2 s ahead (as a max age and grace of 0 after a wait)."""

    async def run() -> None:
        meta = open_metadata_store(f"sqlite://{data_dir}/metadata.db")
        try:
            store = open_blob_store("s3", {**_options(env), "orphan_grace_seconds": -2}, meta)
            assert isinstance(store, S3BlobStore)
            await Uploads(store, meta).purge(-2)
            await store.sweep()
        finally:
            await meta.close()

    asyncio.run(run())


@pytest.mark.parametrize("step", STEPS)
def test_a_crash_at_any_step_leaves_nothing_wrong_or_undeletable(
        tmp_path: Path, seaweedfs: SeaweedFS, step: str) -> None:
    data = os.urandom(6 * MiB + 10)
    digest = sha256(data)
    env = s3_env(seaweedfs)
    prefix = env["CARGOHOLD_STORAGE_S3_PREFIX"]
    with _running(tmp_path, {**env, "CARGOHOLD_CRASH_AT": step}) as server, \
            httpx.Client(base_url=server.url, timeout=60) as client, pytest.raises(httpx.HTTPError):
        location = client.post(f"/v2/{REPO}/blobs/uploads/").headers["location"]
        r = client.patch(location, content=data[:-7])
        assert r.status_code == 202, r.text
        r = client.put(r.headers["location"], params={"digest": digest}, content=data[-7:])
        pytest.fail(f"the server answered {r.status_code} instead of dying")
    data_dir = server.data_dir
    _assert_every_blob_row_holds_its_bytes(seaweedfs, data_dir, prefix)
    _purge_and_sweep(env, data_dir)
    _assert_every_blob_row_holds_its_bytes(seaweedfs, data_dir, prefix)
    objects, multipart = _objects(seaweedfs, prefix)
    blobs, keys, uploads = _rows(data_dir)
    assert multipart == [], "multipart uploads left after the purge and the sweep"
    assert uploads == set(), "upload rows left after the purge"
    assert set(objects) == set(keys.values()), "objects that no row names, or rows without their object"
    # a commit that was verified before the crash was completed by the purge; any other upload is gone
    assert blobs == ({digest} if STEPS.index(step) > STEPS.index("upload-synced") else set())
    with _running(tmp_path, env) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        r = client.post(f"/v2/{REPO}/blobs/uploads/", params={"digest": digest}, content=data)
        assert r.status_code == 201, r.text
        assert client.get(f"/v2/{REPO}/blobs/{digest}").content == data
    _assert_every_blob_row_holds_its_bytes(seaweedfs, data_dir, prefix)


def test_the_sweep_runs_as_a_job(tmp_path: Path, seaweedfs: SeaweedFS) -> None:
    """A server with a short grace removes what no row names by itself; what rows name stays."""
    env = s3_env(seaweedfs, orphan_grace_seconds="1")
    prefix = env["CARGOHOLD_STORAGE_S3_PREFIX"]
    client = seaweedfs.client()
    with _running(tmp_path, env) as server, httpx.Client(base_url=server.url, timeout=60) as registry:
        data = os.urandom(1000)
        r = registry.post(f"/v2/{REPO}/blobs/uploads/", params={"digest": sha256(data)}, content=data)
        assert r.status_code == 201, r.text
        client.put_object(Bucket=BUCKET, Key=f"{prefix}blobs/orphan", Body=b"nothing names it")
        client.create_multipart_upload(Bucket=BUCKET, Key=f"{prefix}blobs/unrecorded")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _objects(seaweedfs, prefix) != ({}, []):
            objects, multipart = _objects(seaweedfs, prefix)
            if len(objects) == 1 and multipart == []:
                break
            time.sleep(0.5)
        objects, multipart = _objects(seaweedfs, prefix)
        assert list(objects.values()) == [data] and multipart == []
        assert registry.get(f"/v2/{REPO}/blobs/{sha256(data)}").content == data
