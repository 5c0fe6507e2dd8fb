"""Upstream: the proxy's async face over the client, against real registries (htpasswd and token auth)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from cargohold.client.auth import parse_challenge
from cargohold.digest import Digest
from cargohold.proxy.upstream import Upstream, UpstreamError, UpstreamRefused, UpstreamSettings

from .conftest import PASSWORD, USERNAME, UpstreamServer


async def _read(upstream: Upstream, repository: str, digest: Digest) -> bytes:
    blob = await upstream.open_blob(repository, digest)
    try:
        return b"".join([chunk async for chunk in blob.chunks()])
    finally:
        await blob.close()


def test_reads_manifests_blobs_and_tags_with_credentials(
    any_upstream: UpstreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "cargohold.proxy")
    image = any_upstream.push_image()
    layer = image.layers[0]

    async def run() -> None:
        upstream = Upstream(any_upstream.settings("up"))
        try:
            digest, media_type, size = await upstream.head_manifest(image.repository, image.tag)
            assert (digest, media_type, size) == (image.manifest_digest, image.media_type, len(image.manifest))
            raw, media_type, digest = await upstream.get_manifest(image.repository, image.tag)
            assert (raw, media_type, digest) == (image.manifest, image.media_type, image.manifest_digest)
            assert await upstream.get_manifest(image.repository, image.manifest_digest) == (raw, media_type, digest)
            assert await upstream.blob_size(image.repository, Digest.parse(layer)) == len(image.blobs[layer])
            assert await _read(upstream, image.repository, Digest.parse(layer)) == image.blobs[layer]
            assert await upstream.tags(image.repository) == [image.tag]
            assert upstream.counts == {"manifest": 2, "blob": 1}
        finally:
            await upstream.close()

    asyncio.run(run())
    # the upstream saw the same pulls (HEADs are not pulls)
    assert any_upstream.gets(image.repository, "manifests") == 2
    assert any_upstream.gets(image.repository, "blobs") == 1
    # each GET is logged with the upstream, kind, repository, reference and the count so far
    logged = [r.getMessage() for r in caplog.records if r.name == "cargohold.proxy"]
    assert logged == [
        f"upstream up: GET manifest {image.repository}@{image.tag} (1 manifest GETs so far)",
        f"upstream up: GET manifest {image.repository}@{image.manifest_digest} (2 manifest GETs so far)",
        f"upstream up: GET blob {image.repository}@{layer} (1 blob GETs so far)",
    ]


def test_credentials_from_a_docker_config_file(distribution_upstream: UpstreamServer, tmp_path: Path) -> None:
    image = distribution_upstream.push_image()
    auth = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {distribution_upstream.host: {"auth": auth}}}))
    settings = distribution_upstream.settings(username=None, password=None, docker_config=str(config))

    async def run() -> tuple[bytes, str, str]:
        upstream = Upstream(settings)
        try:
            return await upstream.get_manifest(image.repository, image.tag)
        finally:
            await upstream.close()

    assert asyncio.run(run())[0] == image.manifest


def test_a_bearer_token_is_sent_as_is(cargohold_upstream: UpstreamServer) -> None:
    image = cargohold_upstream.push_image()
    challenge = parse_challenge(httpx.get(f"{cargohold_upstream.url}/v2/").headers["WWW-Authenticate"])
    assert challenge is not None
    response = httpx.get(challenge.realm, auth=(USERNAME, PASSWORD),
                         params={"service": challenge.service or "", "scope": f"repository:{image.repository}:pull"})
    token = response.json()["token"]

    async def run(settings: UpstreamSettings, layer: str | None = None) -> bytes:
        upstream = Upstream(settings)
        try:
            if layer is not None:
                return await _read(upstream, image.repository, Digest.parse(layer))
            return (await upstream.get_manifest(image.repository, image.tag))[0]
        finally:
            await upstream.close()

    with_token = cargohold_upstream.settings(username=None, password=None, token=token)
    assert asyncio.run(run(with_token)) == image.manifest
    layer = image.layers[0]
    assert asyncio.run(run(with_token, layer)) == image.blobs[layer]
    blob_path = f"/v2/{image.repository}/blobs/{layer}"
    # sent with the token the first time (no 401 and second try)
    assert [status for method, path, status in cargohold_upstream.requests()
            if method == "GET" and path == blob_path] == [200]
    with pytest.raises(UpstreamRefused) as refused:
        asyncio.run(run(cargohold_upstream.settings(username=None, password=None, token="not-a-token")))
    assert refused.value.status == 401


def test_bad_credentials_are_refused_with_401(any_upstream: UpstreamServer) -> None:
    image = any_upstream.push_image()

    async def run() -> None:
        upstream = Upstream(any_upstream.settings(password="wrong-password"))
        try:
            with pytest.raises(UpstreamRefused) as refused:
                await upstream.get_manifest(image.repository, image.tag)
            assert refused.value.status == 401
            assert refused.value.code == "UNAUTHORIZED"
            with pytest.raises(UpstreamRefused) as refused:
                await upstream.open_blob(image.repository, Digest.parse(image.layers[0]))
            assert refused.value.status == 401
        finally:
            await upstream.close()

    asyncio.run(run())


def test_unknown_content_is_refused_with_404_and_its_code(any_upstream: UpstreamServer) -> None:
    image = any_upstream.push_image()
    missing = Digest.of(b"never pushed")

    async def run() -> None:
        upstream = Upstream(any_upstream.settings())
        try:
            with pytest.raises(UpstreamRefused) as refused:
                await upstream.get_manifest(image.repository, "no-such-tag")
            assert (refused.value.status, refused.value.code) == (404, "MANIFEST_UNKNOWN")
            with pytest.raises(UpstreamRefused) as refused:
                await upstream.head_manifest(image.repository, "no-such-tag")
            assert refused.value.status == 404
            with pytest.raises(UpstreamRefused) as refused:
                await upstream.blob_size(image.repository, missing)
            assert (refused.value.status, refused.value.code) == (404, "BLOB_UNKNOWN")
            with pytest.raises(UpstreamRefused) as refused:
                await upstream.open_blob(image.repository, missing)
            assert (refused.value.status, refused.value.code) == (404, "BLOB_UNKNOWN")
        finally:
            await upstream.close()

    asyncio.run(run())


def test_a_stopped_upstream_fails_fast(start_distribution_upstream: Callable[[], UpstreamServer]) -> None:
    server = start_distribution_upstream()
    image = server.push_image()

    async def run() -> float:
        upstream = Upstream(server.settings())
        try:
            assert (await upstream.get_manifest(image.repository, image.tag))[0] == image.manifest
            server.stop()
            started = time.monotonic()
            for call in (upstream.head_manifest(image.repository, image.tag),
                         upstream.get_manifest(image.repository, image.tag),
                         upstream.open_blob(image.repository, Digest.parse(image.layers[0]))):
                with pytest.raises(UpstreamError) as failed:
                    await call
                assert failed.value.status is None
            return time.monotonic() - started
        finally:
            await upstream.close()

    elapsed = asyncio.run(run())
    assert elapsed < 1.5, f"three calls to a stopped upstream took {elapsed:.2f} s"


class _Recorder:
    """A loopback HTTP server answering each request with ``answer(handler)``; keeps what it received."""

    def __init__(self, answer: Callable[[BaseHTTPRequestHandler], None]) -> None:
        self.received: list[tuple[str, str, dict[str, str]]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                recorder.received.append((self.command, self.path, dict(self.headers.items())))
                answer(self)

            do_GET = do_HEAD = _any

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"", **headers: str) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


@pytest.mark.parametrize("storage_answer", ["bytes", "bearer-challenge"])
def test_credentials_never_follow_a_redirect_to_another_host(storage_answer: str) -> None:
    """A blob GET redirected to storage on another port: no Authorization reaches storage, and
    a 401 from storage cannot make the proxy send its credentials to a realm storage names."""
    data = b"blob bytes from storage"
    digest = Digest.of(data)
    realm = _Recorder(lambda h: _send(h, 200, b'{"token": "t"}', Content_Type="application/json"))

    def storage_answers(handler: BaseHTTPRequestHandler) -> None:
        if storage_answer == "bytes":
            _send(handler, 200, data)
        else:
            _send(handler, 401, WWW_Authenticate=f'Bearer realm="{realm.url}/token",service="storage"')

    storage = _Recorder(storage_answers)
    secret = "Basic " + base64.b64encode(b"proxy:secret").decode()

    def registry_answers(handler: BaseHTTPRequestHandler) -> None:
        if handler.headers.get("Authorization") != secret:
            _send(handler, 401, WWW_Authenticate='Basic realm="registry"')
        elif handler.path == "/v2/":
            _send(handler, 200, b"{}")
        else:
            _send(handler, 307, Location=f"{storage.url}/bucket/{digest.hex}?signature=abc")

    registry = _Recorder(registry_answers)

    async def run() -> bytes | UpstreamRefused:
        upstream = Upstream(UpstreamSettings("up", registry.url, username="proxy", password="secret"))
        try:
            return await _read(upstream, "library/app", digest)
        except UpstreamRefused as refused:
            return refused
        finally:
            await upstream.close()

    try:
        outcome = asyncio.run(run())
    finally:
        for server in (registry, storage, realm):
            server.close()
    assert any(headers.get("Authorization") == secret for _, _, headers in registry.received)
    assert storage.received, "the redirect was not followed"
    assert all("Authorization" not in headers for _, _, headers in storage.received)
    assert realm.received == []
    if storage_answer == "bytes":
        assert outcome == data
    else:
        assert isinstance(outcome, UpstreamRefused) and outcome.status == 401


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_and_server_errors_are_upstream_errors_at_once(status: int) -> None:
    """A Retry-After is handed up with the error, not waited for (the proxy serves its cached copy)."""

    def answers(handler: BaseHTTPRequestHandler) -> None:
        if handler.path == "/v2/":
            _send(handler, 200, b"{}")
        else:
            _send(handler, status, b'{"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]}',
                  Retry_After="20", Content_Type="application/json")

    registry = _Recorder(answers)

    async def run() -> UpstreamError:
        upstream = Upstream(UpstreamSettings("up", registry.url))
        try:
            with pytest.raises(UpstreamError) as failed:
                await upstream.get_manifest("library/app", "latest")
            return failed.value
        finally:
            await upstream.close()

    started = time.monotonic()
    try:
        error = asyncio.run(run())
    finally:
        registry.close()
    assert time.monotonic() - started < 2
    assert (error.status, error.retry_after) == (status, 20.0)


def test_concurrent_first_requests_share_one_ping_and_one_token(cargohold_upstream: UpstreamServer) -> None:
    """The proxy's threads start together on a cold client: one token per scope is fetched, not one each."""
    image = cargohold_upstream.push_image()
    challenge = parse_challenge(httpx.get(f"{cargohold_upstream.url}/v2/").headers["WWW-Authenticate"])
    assert challenge is not None
    realm_path = httpx.URL(challenge.realm).path
    before = [path for method, path, _ in cargohold_upstream.requests() if path.split("?")[0] == realm_path]

    async def run() -> list[tuple[bytes, str, str]]:
        upstream = Upstream(cargohold_upstream.settings())
        try:
            return await asyncio.gather(*(upstream.get_manifest(image.repository, image.tag) for _ in range(12)))
        finally:
            await upstream.close()

    assert all(raw == image.manifest for raw, _, _ in asyncio.run(run()))
    token_requests = [path for method, path, _ in cargohold_upstream.requests()
                      if path.split("?")[0] == realm_path][len(before):]
    # one for the ping (no scope), one for the repository's pull scope
    assert len(token_requests) == 2, token_requests


def test_an_upstream_that_never_answers_the_connection_fails_within_the_connect_timeout() -> None:
    """A listener whose accept queue is full drops new connections' SYNs: connecting hangs, as to a
    host that is down. The connect timeout ends it, not the (long) read timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    queued = []
    for _ in range(4):
        sock = socket.socket()
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", port))
        queued.append(sock)
    settings = UpstreamSettings("up", f"http://127.0.0.1:{port}", timeout_seconds=30, connect_timeout_seconds=0.3)

    async def run() -> float:
        upstream = Upstream(settings)
        started = time.monotonic()
        try:
            with pytest.raises(UpstreamError):
                await upstream.get_manifest("library/app", "latest")
            return time.monotonic() - started
        finally:
            await upstream.close()

    try:
        elapsed = asyncio.run(run())
    finally:
        for sock in [*queued, listener]:
            sock.close()
    assert elapsed < 2, f"took {elapsed:.2f} s"
