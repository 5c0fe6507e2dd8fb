"""A registry whose S3 store throttles, fails, resets connections or hangs (faults planted by a
proxy in front of SeaweedFS): retries absorb a few, then the client hears TOOMANYREQUESTS or
UNAVAILABLE in bounded time, never a 500, and readiness fails while the store does not answer."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import httpx
import pytest

from cargohold.service.readiness import CACHE_SECONDS
from tests.support.backends import s3_env
from tests.support.faultproxy import FaultProxy
from tests.support.seaweedfs import SeaweedFS
from tests.support.servers import CargoholdServer, cargohold

from .helpers import codes, sha256

MiB = 1024 * 1024
ATTEMPTS = 3
TIMEOUT = 1.0


@pytest.fixture(scope="module")
def proxy(seaweedfs: SeaweedFS) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(seaweedfs.port).start()
    try:
        yield fault_proxy
    finally:
        fault_proxy.stop()


@pytest.fixture(scope="module")
def faulty_store_registry(seaweedfs: SeaweedFS, proxy: FaultProxy,
                          tmp_path_factory: pytest.TempPathFactory) -> Iterator[CargoholdServer]:
    env = s3_env(seaweedfs, endpoint=proxy.endpoint, max_attempts=str(ATTEMPTS), timeout_seconds=str(TIMEOUT))
    with cargohold(tmp_path_factory.mktemp("s3-faults"), "--workers", "1", env=env) as server:
        yield server


@pytest.fixture()
def client(faulty_store_registry: CargoholdServer, proxy: FaultProxy) -> Iterator[httpx.Client]:
    proxy.set("forward")
    with httpx.Client(base_url=faulty_store_registry.url, timeout=60) as c:
        yield c
    proxy.set("forward")


def _post(client: httpx.Client, repo: str, data: bytes) -> httpx.Response:
    return client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(data)}, content=data)


def test_throttling_within_the_retries_is_not_seen(client: httpx.Client, proxy: FaultProxy) -> None:
    data = os.urandom(100_000)
    proxy.set("slowdown", ATTEMPTS - 1)
    assert _post(client, "faults/slow", data).status_code == 201
    assert proxy.planted == ATTEMPTS - 1
    proxy.set("slowdown", ATTEMPTS - 1)
    assert client.get(f"/v2/faults/slow/blobs/{sha256(data)}").content == data


def test_throttling_past_the_retries_answers_toomanyrequests(client: httpx.Client, proxy: FaultProxy) -> None:
    data = os.urandom(100_000)
    proxy.set("slowdown")
    r = _post(client, "faults/slower", data)
    assert r.status_code == 429 and codes(r) == ["TOOMANYREQUESTS"], r.text
    assert r.headers["retry-after"] == "1"
    assert proxy.planted % ATTEMPTS == 0  # each call (the write, the clean-up) tried ATTEMPTS times
    proxy.set("forward")
    assert _post(client, "faults/slower", data).status_code == 201


def test_a_chunk_refused_for_throttling_is_sent_again(client: httpx.Client, proxy: FaultProxy) -> None:
    """A PATCH that met SlowDown past its retries leaves the upload as it was: the client resends it."""
    data = os.urandom(6 * MiB + 10)
    location = client.post("/v2/faults/chunks/blobs/uploads/").headers["location"]
    proxy.set("slowdown")
    r = client.patch(location, content=data)
    assert r.status_code == 429 and codes(r) == ["TOOMANYREQUESTS"], r.text
    proxy.set("forward")
    r = client.patch(location, content=data)
    assert r.status_code == 202, r.text
    r = client.put(r.headers["location"], params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert client.get(f"/v2/faults/chunks/blobs/{sha256(data)}").content == data


def test_dropped_connections_are_retried_then_answer_unavailable(client: httpx.Client, proxy: FaultProxy) -> None:
    data = os.urandom(50_000)
    proxy.set("reset", ATTEMPTS - 1)
    assert _post(client, "faults/reset", data).status_code == 201
    assert proxy.planted == ATTEMPTS - 1
    other = os.urandom(50_000)
    proxy.set("reset")
    r = _post(client, "faults/reset", other)
    assert r.status_code == 503 and codes(r) == ["UNAVAILABLE"], r.text
    proxy.set("forward")
    assert _post(client, "faults/reset", other).status_code == 201


def test_a_hanging_store_fails_readiness_and_requests_in_bounded_time(
        client: httpx.Client, proxy: FaultProxy) -> None:
    data = os.urandom(50_000)
    assert _post(client, "faults/hang", data).status_code == 201
    assert client.get("/readyz").status_code == 200
    proxy.set("hang")
    started = time.monotonic()
    while (r := client.get("/readyz")).status_code == 200:  # the last check's result, reused for a moment
        assert time.monotonic() - started < CACHE_SECONDS + 1
    assert r.status_code == 503 and "blobs" in r.json()["failed"]
    assert time.monotonic() - started < CACHE_SECONDS + TIMEOUT + 1  # one attempt, bounded by the timeout
    bound = ATTEMPTS * TIMEOUT + 8  # every attempt times out; boto3's backoff between them
    started = time.monotonic()
    r = client.get(f"/v2/faults/hang/blobs/{sha256(data)}")
    assert r.status_code == 503 and codes(r) == ["UNAVAILABLE"], r.text
    assert time.monotonic() - started < bound
    started = time.monotonic()
    r = _post(client, "faults/hang", os.urandom(1000))
    assert r.status_code == 503 and codes(r) == ["UNAVAILABLE"], r.text
    assert time.monotonic() - started < 2 * bound  # the write, then the clean-up of the refused upload
    assert client.head(f"/v2/faults/hang/blobs/{sha256(data)}").status_code == 200  # from the database
    proxy.set("forward")
    assert client.get("/readyz").status_code == 200
    assert client.get(f"/v2/faults/hang/blobs/{sha256(data)}").content == data
