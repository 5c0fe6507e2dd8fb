"""Upload sessions: monolithic, chunked, streamed, resumed; and every way to get one wrong."""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from tests.support.backends import ON_S3, Setup
from tests.support.postgres import query
from tests.support.servers import CargoholdServer, cargohold

from .helpers import codes, push_blob, sha256


def start(client: httpx.Client, repo: str) -> str:
    r = client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    assert r.headers["range"] == "0-0"
    assert r.headers["docker-upload-uuid"]
    assert r.headers["location"].endswith(r.headers["docker-upload-uuid"])
    return str(r.headers["location"])


def patch(client: httpx.Client, location: str, data: bytes, offset: int | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/octet-stream"}
    if offset is not None:
        headers["Content-Range"] = f"{offset}-{offset + len(data) - 1}"
    return client.patch(location, content=data, headers=headers)


def test_post_then_put_with_body(client: httpx.Client, repo: str) -> None:
    data = os.urandom(5000)
    location = start(client, repo)
    r = client.put(location, params={"digest": sha256(data)}, content=data)
    assert r.status_code == 201
    assert r.headers["location"] == f"/v2/{repo}/blobs/{sha256(data)}"
    assert client.get(r.headers["location"]).content == data


def test_chunked_upload_with_content_range(client: httpx.Client, repo: str) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    location = start(client, repo)
    offset = 0
    for size in (1024 * 1024, 1, 2 * 1024 * 1024 - 1, 5):
        r = patch(client, location, data[offset : offset + size], offset)
        assert r.status_code == 202, r.text
        offset += size
        assert r.headers["range"] == f"0-{offset - 1}"
        location = r.headers["location"]
    status = client.get(location)
    assert status.status_code == 204 and status.headers["range"] == f"0-{len(data) - 1}"
    r = client.put(location, params={"digest": sha256(data)})
    assert r.status_code == 201
    assert client.get(f"/v2/{repo}/blobs/{sha256(data)}").content == data


def test_chunks_of_every_size_around_an_s3_part(client: httpx.Client, repo: str, backend: str) -> None:
    """PATCHes of 0, 1, 5 MiB - 1, 5 MiB, 5 MiB + 1 bytes, one whole part and 3.5 parts (S3 parts are
    5 MiB in these tests: parts fill across requests, a tail carries over, a request ends on a boundary).
    Only S3 names a smallest chunk."""
    mib = 1024 * 1024
    sizes = [0, 1, 5 * mib - 1, 5 * mib, 5 * mib + 1, 5 * mib, 35 * mib // 2]
    data = os.urandom(sum(sizes))
    location = start(client, repo)
    offset = 0
    for size in sizes:
        r = patch(client, location, data[offset : offset + size], offset if size else None)
        assert r.status_code == 202, r.text
        offset += size
        assert r.headers["range"] == f"0-{max(offset - 1, 0)}"
        assert r.headers.get("oci-chunk-min-length") == (str(5 * mib) if backend in ON_S3 else None)
        location = r.headers["location"]
    r = client.put(location, params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert client.get(f"/v2/{repo}/blobs/{sha256(data)}").content == data


def test_streamed_patch_without_content_length(client: httpx.Client, repo: str) -> None:
    pieces = [os.urandom(70_000) for _ in range(20)]
    data = b"".join(pieces)

    def body() -> Iterator[bytes]:
        yield from pieces

    location = start(client, repo)
    r = client.patch(location, content=body())  # chunked transfer encoding
    assert r.status_code == 202 and r.headers["range"] == f"0-{len(data) - 1}"
    r = client.put(r.headers["location"], params={"digest": sha256(data)})
    assert r.status_code == 201


def test_out_of_order_chunk_is_416(client: httpx.Client, repo: str) -> None:
    location = start(client, repo)
    assert patch(client, location, b"a" * 10, 0).status_code == 202
    r = patch(client, location, b"b" * 10, 20)
    assert r.status_code == 416 and codes(r) == ["RANGE_INVALID"]
    r = patch(client, location, b"b" * 10, 0)
    assert r.status_code == 416
    # the session is unharmed and goes on from 10
    assert patch(client, location, b"c" * 10, 10).status_code == 202
    assert client.put(location, params={"digest": sha256(b"a" * 10 + b"c" * 10)}).status_code == 201


def test_malformed_content_range(client: httpx.Client, repo: str) -> None:
    location = start(client, repo)
    for value in ("abc", "5-2", "bytes=x-y"):
        r = client.patch(location, content=b"x", headers={"Content-Range": value})
        assert r.status_code == 416, value
    r = client.patch(location, content=b"xyz", headers={"Content-Range": "0-9"})
    assert r.status_code == 400 and codes(r) == ["SIZE_INVALID"]
    assert client.get(location).headers["range"] == "0-0"
    client.delete(location)


def test_put_without_digest(client: httpx.Client, repo: str) -> None:
    location = start(client, repo)
    r = client.put(location, content=b"data")
    assert r.status_code == 400 and codes(r) == ["DIGEST_INVALID"]
    client.delete(location)


def test_digest_mismatch_cancels_and_leaves_nothing(
    fresh_client: httpx.Client, fresh_registry: CargoholdServer
) -> None:
    repo = "bad/digest"
    location = start(fresh_client, repo)
    r = fresh_client.put(location, params={"digest": sha256(b"other")}, content=b"actual bytes")
    assert r.status_code == 400 and codes(r) == ["DIGEST_INVALID"]
    assert fresh_client.get(location).status_code == 404
    r = fresh_client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(b"other")}, content=b"actual")
    assert r.status_code == 400 and codes(r) == ["DIGEST_INVALID"]
    assert fresh_registry.blob_files() == {}
    assert fresh_registry.upload_files() == set()
    fresh_registry.assert_storage_consistent()


def test_monolithic_wrong_size(fresh_client: httpx.Client, fresh_registry: CargoholdServer) -> None:
    """A body shorter than its Content-Length: the server never stores it."""
    data = b"0123456789"
    with socket.create_connection(("127.0.0.1", fresh_registry.port)) as sock:
        sock.sendall(
            f"POST /v2/size/bad/blobs/uploads/?digest={sha256(data)} HTTP/1.1\r\n"
            f"Host: x\r\nContent-Length: 100\r\n\r\n".encode() + data
        )
        sock.shutdown(socket.SHUT_WR)
        sock.recv(4096)
    time.sleep(0.3)
    assert fresh_registry.blob_files() == {}
    fresh_registry.assert_storage_consistent()


def test_truncated_chunk_keeps_session_at_previous_size(fresh_registry: CargoholdServer) -> None:
    with httpx.Client(base_url=fresh_registry.url) as client:
        location = start(client, "trunc/repo")
        assert patch(client, location, b"x" * 1000, 0).status_code == 202
        path = httpx.URL(fresh_registry.url + location)
        with socket.create_connection(("127.0.0.1", fresh_registry.port)) as sock:
            sock.sendall(
                f"PATCH {path.raw_path.decode()} HTTP/1.1\r\nHost: x\r\n"
                f"Content-Range: 1000-2999\r\nContent-Length: 2000\r\n\r\n".encode() + b"y" * 700
            )
            sock.shutdown(socket.SHUT_WR)
            sock.recv(4096)
        time.sleep(0.3)
        assert client.get(location).headers["range"] == "0-999"
        assert patch(client, location, b"z" * 5, 1000).status_code == 202
        r = client.put(location, params={"digest": sha256(b"x" * 1000 + b"z" * 5)})
        assert r.status_code == 201
    fresh_registry.assert_storage_consistent()


def test_cancel_upload(fresh_client: httpx.Client, fresh_registry: CargoholdServer) -> None:
    location = start(fresh_client, "cancel/me")
    patch(fresh_client, location, b"partial", 0)
    assert fresh_client.delete(location).status_code == 204
    r = fresh_client.get(location)
    assert r.status_code == 404 and codes(r) == ["BLOB_UPLOAD_UNKNOWN"]
    assert fresh_client.delete(location).status_code == 404
    assert fresh_registry.upload_files() == set()


def test_unknown_upload(client: httpx.Client, repo: str) -> None:
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        r = client.request(method, f"/v2/{repo}/blobs/uploads/nosuchupload", params={"digest": sha256(b"")})
        assert r.status_code == 404 and codes(r) == ["BLOB_UPLOAD_UNKNOWN"], method


def test_upload_belongs_to_its_repository(client: httpx.Client, repo: str) -> None:
    location = start(client, f"{repo}/one")
    upload_id = location.rsplit("/", 1)[1]
    r = client.get(f"/v2/{repo}/two/blobs/uploads/{upload_id}")
    assert r.status_code == 404 and codes(r) == ["BLOB_UPLOAD_UNKNOWN"]
    client.delete(location)


def test_sha512_digest(client: httpx.Client, repo: str, backend: str) -> None:
    data = os.urandom(2000)
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    location = start(client, repo)
    patch(client, location, data[:1000], 0)
    r = client.put(location, params={"digest": digest}, content=data[1000:])
    if backend in ON_S3:  # S3 cannot read an unfinished upload back to hash it again: the client is told how
        assert r.status_code == 404 and codes(r) == ["BLOB_UPLOAD_UNKNOWN"]
        assert "start it again with digest-algorithm=sha512" in r.text
        location = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest-algorithm": "sha512"}).headers["location"]
        patch(client, location, data[:1000], 0)
        r = client.put(location, params={"digest": digest}, content=data[1000:])
    assert r.status_code == 201
    assert client.get(f"/v2/{repo}/blobs/{digest}").content == data
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
    assert r.status_code == 201


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


def test_upload_for_a_named_digest_algorithm(client: httpx.Client, repo: str) -> None:
    data = os.urandom(3000)
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest-algorithm": "sha512"})
    assert r.status_code == 202, r.text
    location = r.headers["location"]
    assert patch(client, location, data[:1000], 0).status_code == 202
    # the session hashes with sha512, so it completes with a sha512 digest only; a refusal keeps it as it was
    r = client.put(location, params={"digest": sha256(data)}, content=data[1000:])
    assert r.status_code == 400 and codes(r) == ["DIGEST_INVALID"]
    assert client.get(location).headers["range"] == "0-999"
    r = client.put(location, params={"digest": sha512(data)}, content=data[1000:])
    assert r.status_code == 201, r.text
    assert client.get(f"/v2/{repo}/blobs/{sha512(data)}").content == data
    # sha256 may be named too, and the single-request upload takes the parameter as well
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest-algorithm": "sha256"})
    assert r.status_code == 202
    client.delete(r.headers["location"])
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest-algorithm": "sha512", "digest": sha512(b"one")},
                    content=b"one")
    assert r.status_code == 201, r.text


def test_unsupported_digest_algorithm(fresh_client: httpx.Client, fresh_registry: CargoholdServer) -> None:
    repo = "algo/bad"
    for algorithm in ("md5", "blake3", "SHA256", "sha384", ""):
        r = fresh_client.post(f"/v2/{repo}/blobs/uploads/", params={"digest-algorithm": algorithm})
        assert r.status_code == 400 and codes(r) == ["DIGEST_INVALID"], algorithm
    # a single-request upload whose digest is not of the named algorithm stores nothing
    r = fresh_client.post(f"/v2/{repo}/blobs/uploads/", params={"digest-algorithm": "sha512", "digest": sha256(b"x")},
                          content=b"x")
    assert r.status_code == 400 and codes(r) == ["DIGEST_INVALID"]
    assert fresh_client.get(f"/v2/{repo}/blobs/{sha256(b'x')}").status_code == 404
    assert fresh_registry.upload_rows() == set() and fresh_registry.blob_files() == {}
    fresh_registry.assert_storage_consistent()


def test_empty_blob(client: httpx.Client, repo: str) -> None:
    digest = push_blob(client, repo, b"")
    r = client.get(f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 200 and r.content == b""


def test_concurrent_uploads_of_one_blob(client: httpx.Client, repo: str, registry: CargoholdServer) -> None:
    data = os.urandom(4 * 1024 * 1024)

    def upload(n: int) -> int:
        with httpx.Client(base_url=registry.url) as c:
            location = start(c, f"{repo}/r{n}")
            patch(c, location, data[:2_000_000], 0)
            return c.put(location, params={"digest": sha256(data)}, content=data[2_000_000:]).status_code

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert list(pool.map(upload, range(4))) == [201] * 4
    for n in range(4):
        assert client.get(f"/v2/{repo}/r{n}/blobs/{sha256(data)}").content == data


def test_upload_resumes_after_restart(tmp_path: Path, setup: Setup) -> None:
    data = os.urandom(3_000_000)
    with cargohold(tmp_path, env=setup.env, database_url=setup.database_url) as server:
        with httpx.Client(base_url=server.url) as client:
            location = start(client, "resume/me")
            assert patch(client, location, data[:1_000_000], 0).status_code == 202
        server.stop(signal.SIGTERM)
        server.start()
        with httpx.Client(base_url=server.url) as client:
            assert client.get(location).headers["range"] == "0-999999"
            assert patch(client, location, data[1_000_000:], 1_000_000).status_code == 202
            assert client.put(location, params={"digest": sha256(data)}).status_code == 201
            assert client.get(f"/v2/resume/me/blobs/{sha256(data)}").content == data
        server.assert_storage_consistent()


def test_abandoned_uploads_are_purged(tmp_path: Path, setup: Setup) -> None:
    env = {**setup.env, "CARGOHOLD_UPLOAD_MAX_AGE_SECONDS": "1"}
    with cargohold(tmp_path, env=env, database_url=setup.database_url) as server:
        with httpx.Client(base_url=server.url) as client:
            location = start(client, "purge/me")
            patch(client, location, b"abandoned", 0)
            assert server.upload_files() == {location.rsplit("/", 1)[1]}
            deadline = time.monotonic() + 10
            orphan = server.data_dir / "uploads" / "orphan0123"
            if not setup.on_s3:  # a file of a session that was never recorded (S3 records a session first)
                orphan.write_bytes(b"bytes of a session that was never recorded")
                os.utime(orphan, (time.time() - 60, time.time() - 60))
            while client.get(location).status_code != 404 or orphan.exists():
                assert time.monotonic() < deadline, "upload was not purged"
                time.sleep(0.2)
        assert server.upload_files() == set()
        server.assert_storage_consistent()


def _response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response with a Content-Length."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += sock.recv(65536) or b"!"  # "!" ends a loop on a closed connection with a parse error below
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = int(next(v for k, _, v in (line.partition(":") for line in lines[1:]) if k.lower() == "content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return int(lines[0].split()[1]), body


def _unit(server: CargoholdServer) -> int:
    """Bytes a PATCH writes before the store shows them: a file's growth, or a whole S3 part."""
    return int(server.env.get("CARGOHOLD_STORAGE_S3_PART_SIZE", 1_000_000))


def _written(server: CargoholdServer, upload_id: str) -> int:
    """The bytes of an upload the store shows so far (its file, or its recorded S3 parts)."""
    if "CARGOHOLD_STORAGE_S3_PART_SIZE" in server.env:
        url = server.database_url or f"sqlite://{server.data_dir / 'metadata.db'}"
        rows = query(url, "SELECT size FROM store_upload_parts WHERE upload_id = ?", (upload_id,))
        return sum(int(row[0]) for row in rows)
    path = server.data_dir / "uploads" / upload_id
    return path.stat().st_size if path.exists() else 0


@contextlib.contextmanager
def patch_in_flight(server: CargoholdServer, location: str, data: bytes) -> Iterator[Callable[[], tuple[int, bytes]]]:
    """A PATCH whose body is held open once its first :func:`_unit` is in the store; call to finish it."""
    unit = _unit(server)
    held = unit * 3 // 2
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            f"PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(data)}\r\n\r\n".encode() + data[:held]
        )
        deadline = time.monotonic() + 20
        while _written(server, location.rsplit("/", 1)[1]) < unit:  # the request is writing
            assert time.monotonic() < deadline, "the PATCH never started writing"
            time.sleep(0.01)

        def finish() -> tuple[int, bytes]:
            sock.sendall(data[held:])
            return _response(sock)

        yield finish


def test_two_patches_at_once_on_one_upload(fresh_registry: CargoholdServer) -> None:
    """A request on a session that another request is still writing is refused and changes nothing."""
    unit = _unit(fresh_registry)
    first, second = os.urandom(2 * unit), os.urandom(unit * 9 // 5)
    with httpx.Client(base_url=fresh_registry.url, timeout=30) as client:
        location = start(client, "two/at-once")
        with patch_in_flight(fresh_registry, location, first) as finish:
            for late in (patch(client, location, second), client.put(location, params={"digest": sha256(second)},
                                                                      content=second)):
                assert late.status_code == 400 and codes(late) == ["BLOB_UPLOAD_INVALID"], late.text
            status, body = finish()
        assert status == 202, body
        assert client.get(location).headers["range"] == f"0-{len(first) - 1}"
        assert patch(client, location, second).status_code == 202  # the session is free again
        r = client.put(location, params={"digest": sha256(first + second)})
        assert r.status_code == 201, r.text
        assert client.get(f"/v2/two/at-once/blobs/{sha256(first + second)}").content == first + second
    fresh_registry.assert_storage_consistent()


def test_upload_cancelled_while_a_patch_is_writing(fresh_registry: CargoholdServer) -> None:
    """The PATCH finds its session gone when it records its progress: refused, nothing left behind."""
    with httpx.Client(base_url=fresh_registry.url, timeout=30) as client:
        location = start(client, "cancel/in-flight")
        with patch_in_flight(fresh_registry, location, os.urandom(2 * _unit(fresh_registry))) as finish:
            assert client.delete(location).status_code == 204
            status, body = finish()
        assert status == 400 and b"BLOB_UPLOAD_INVALID" in body, body
        assert client.get(location).status_code == 404
    fresh_registry.assert_storage_consistent()
    assert fresh_registry.upload_files() == set()


def test_the_next_request_of_an_upload_may_come_on_another_connection_at_once(
        registry: CargoholdServer, repo: str) -> None:
    """A client's next request on an upload may reach another worker (or replica) as soon as it has the
    answer to the previous one: the session is free by then, never "in progress". Ten uploads: a lock
    released 0.1 s after the answer fails all four setups at once, one released 0.02 s after passes 30 as well."""
    for n in range(10):
        data = os.urandom(1000 + n)
        with httpx.Client(base_url=registry.url, timeout=30) as c:  # a new connection for each request
            location = start(c, repo)
        for piece, offset in ((data[:500], 0), (data[500:], 500)):
            with httpx.Client(base_url=registry.url, timeout=30) as c:
                r = patch(c, location, piece, offset)
                assert r.status_code == 202, r.text
                location = r.headers["location"]
        with httpx.Client(base_url=registry.url, timeout=30) as c:
            r = c.put(location, params={"digest": sha256(data)})
            assert r.status_code == 201, r.text
