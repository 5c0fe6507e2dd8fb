"""A registry whose blobs are in S3 (SeaweedFS, a real S3 server): redirects to presigned URLs, HEAD
answered from the database, and the chunk size it prefers."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Iterator

import httpx
import pytest

from cargohold.metadata import open_metadata_store
from cargohold.service.uploads import Uploads
from cargohold.storage import open_blob_store
from tests.support.backends import s3_env
from tests.support.postgres import PostgresCluster, query
from tests.support.seaweedfs import BUCKET, SeaweedFS
from tests.support.servers import CargoholdServer, cargohold

from .helpers import push_blob, sha256

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def s3_registry(seaweedfs: SeaweedFS, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CargoholdServer]:
    """Blobs in S3 with redirects on (the default), metadata in SQLite, 2 workers."""
    env = s3_env(seaweedfs, redirect="true")
    with cargohold(tmp_path_factory.mktemp("s3-registry"), "--workers", "2", env=env) as server:
        yield server


@pytest.fixture()
def s3_client(s3_registry: CargoholdServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=s3_registry.url, timeout=30) as c:
        yield c


def test_a_blob_get_is_sent_to_a_presigned_url_and_ranges_work_there(s3_client: httpx.Client) -> None:
    data = os.urandom(100_000)
    digest = push_blob(s3_client, "s3/redirect", data)
    url = f"/v2/s3/redirect/blobs/{digest}"
    r = s3_client.get(url)
    assert r.status_code == 307 and r.headers["docker-content-digest"] == digest
    assert "X-Amz-Signature=" in r.headers["location"] and f"/{BUCKET}/" in r.headers["location"]
    assert httpx.get(r.headers["location"]).content == data
    with httpx.Client(base_url=s3_client.base_url, follow_redirects=True) as following:
        assert following.get(url).content == data
        ranged = following.get(url, headers={"Range": "bytes=10-19"})
        assert ranged.status_code == 206 and ranged.content == data[10:20]
    assert s3_client.get(url, headers={"Range": "bytes=200000-"}).status_code == 416  # checked before redirecting


def test_a_blob_head_is_answered_from_the_database(
        s3_client: httpx.Client, s3_registry: CargoholdServer, seaweedfs: SeaweedFS) -> None:
    data = os.urandom(1000)
    digest = push_blob(s3_client, "s3/head", data)
    keys = [key for key in seaweedfs.keys("") if "/blobs/" in key]
    client = seaweedfs.client()
    for key in keys:  # the bucket goes away under the registry: HEAD does not ask it
        client.delete_object(Bucket=BUCKET, Key=key)
    head = s3_client.head(f"/v2/s3/head/blobs/{digest}")
    assert head.status_code == 200 and head.headers["content-length"] == "1000"


def test_upload_responses_name_the_smallest_chunk_s3_takes(s3_client: httpx.Client) -> None:
    r = s3_client.post("/v2/s3/chunks/blobs/uploads/")
    assert r.status_code == 202 and r.headers["oci-chunk-min-length"] == str(5 * MiB)
    location = r.headers["location"]
    r = s3_client.patch(location, content=b"x" * 10)
    assert r.status_code == 202 and r.headers["oci-chunk-min-length"] == str(5 * MiB)
    assert s3_client.get(location).headers["oci-chunk-min-length"] == str(5 * MiB)
    assert s3_client.put(location, params={"digest": sha256(b"x" * 10)}).status_code == 201



def _declared_only(server: CargoholdServer, method: str, target: str, length: int) -> tuple[int, bytes]:
    """A request that declares ``length`` bytes and sends none (then closes its side): status and body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
                     f"Content-Length: {length}\r\n\r\n".encode())
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_a_blob_over_ten_thousand_parts_is_refused_before_its_body(
        s3_client: httpx.Client, s3_registry: CargoholdServer, seaweedfs: SeaweedFS) -> None:
    """5 MiB parts: a blob of at most 50,000 MiB; one that declares more is refused at once (not after
    50 GB), and leaves nothing: a chunked upload goes on, a monolithic one is gone."""
    limit = 5 * MiB * 10_000
    location = s3_client.post("/v2/s3/huge/blobs/uploads/").headers["location"]
    path = httpx.URL(location).raw_path.decode()
    status, body = _declared_only(s3_registry, "PATCH", path, limit + 1)
    assert status == 400 and json.loads(body)["errors"][0]["code"] == "SIZE_INVALID", body
    assert str(limit) in json.loads(body)["errors"][0]["message"]
    r = s3_client.patch(location, content=b"x" * 10)
    assert r.status_code == 202 and r.headers["range"] == "0-9"
    assert s3_client.put(r.headers["location"], params={"digest": sha256(b"x" * 10)}).status_code == 201
    keys = seaweedfs.keys("")
    status, body = _declared_only(s3_registry, "POST", f"/v2/s3/huge/blobs/uploads/?digest={sha256(b'y')}", limit + 1)
    assert status == 400 and json.loads(body)["errors"][0]["code"] == "SIZE_INVALID", body
    assert seaweedfs.keys("") == keys


def test_an_upload_is_free_for_every_replica_once_a_request_on_it_is_done(
        seaweedfs: SeaweedFS, postgres: PostgresCluster) -> None:
    """The response to a PATCH goes out when the request leaves the upload; the client's next request
    may reach another replica at once, which must not find the upload still "in progress"."""
    url = postgres.migrated_database()

    async def run() -> list[tuple[object, ...]]:
        meta = open_metadata_store(url)
        try:
            uploads = Uploads(open_blob_store("s3", seaweedfs.options(seaweedfs.prefix()), meta), meta)
            upload_id = await uploads.start("s3/free")
            async with uploads.exclusive("s3/free", upload_id):
                pass
            return query(url, "SELECT holder FROM job_leases WHERE name = ?", (f"upload:{upload_id}",))
        finally:
            await meta.close()

    assert asyncio.run(run()) == [], "the upload's lock is still held after the request left it"
