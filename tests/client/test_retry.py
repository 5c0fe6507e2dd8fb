"""Retries with backoff against a small in-test registry that fails on cue (503, 429 + Retry-After, 500).

Idempotent requests are retried by the transport; a POST only when it was
refused (429); a failed PATCH is never resent on its own: the whole upload
starts again, after a HEAD checks the blob did not arrive.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from cargohold.client import Reference, RegistryClient, RegistryResponseError, StaticKeychain, TransportOptions, push
from cargohold.client.cache import BlobCache
from cargohold.client.keychain import Credentials

from .images import build_image, write_layout
from .inprocess import RegistryHandler, serving


@dataclass
class Fault:
    method: str
    path_prefix: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FlakyRegistry:
    """An in-memory registry for one repository, ``r``, that answers scripted faults first."""

    host: str = ""
    faults: list[Fault] = field(default_factory=list)
    log: list[tuple[str, str, int]] = field(default_factory=list)  # method, path, status
    blobs: dict[str, bytes] = field(default_factory=dict)
    uploads: dict[str, bytearray] = field(default_factory=dict)
    manifests: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, method: str, path_prefix: str, status: int, times: int = 1, **headers: str) -> None:
        self.faults += [Fault(method, path_prefix, status, headers) for _ in range(times)]

    def requests(self, method: str | None = None, prefix: str = "") -> list[tuple[str, str, int]]:
        return [e for e in self.log if (method is None or e[0] == method) and e[1].startswith(prefix)]


def handler_for(state: FlakyRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(RegistryHandler):
        def answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            path = urlsplit(self.path).path
            with state.lock:
                state.log.append((self.command, path, status))
            self.reply(status, body, headers)

        def handle_any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            url = urlsplit(self.path)
            path = url.path
            with state.lock:
                fault = next(
                    (f for f in state.faults if f.method == self.command and path.startswith(f.path_prefix)), None
                )
                if fault is not None:
                    state.faults.remove(fault)
            if fault is not None:
                error = {"errors": [{"code": "UNAVAILABLE", "message": f"scripted {fault.status}"}]}
                return self.answer(fault.status, json.dumps(error).encode(), fault.headers)
            if path == "/v2/":
                return self.answer(200, b"{}")
            if path == "/v2/r/tags/list":
                return self.answer(200, json.dumps({"name": "r", "tags": sorted(state.manifests)}).encode())
            if path.startswith("/v2/r/blobs/uploads/"):
                return self.upload(path, parse_qs(url.query), body)
            if path.startswith("/v2/r/blobs/"):
                data = state.blobs.get(path.rsplit("/", 1)[1])
                if data is None:
                    return self.answer(404)
                return self.answer(200, data, {"Docker-Content-Digest": path.rsplit("/", 1)[1]})
            if path.startswith("/v2/r/manifests/"):
                reference = path.rsplit("/", 1)[1]
                if self.command == "PUT":
                    digest = "sha256:" + hashlib.sha256(body).hexdigest()
                    state.manifests[reference] = (body, self.headers["Content-Type"])
                    return self.answer(201, headers={"Docker-Content-Digest": digest})
                if reference not in state.manifests:
                    return self.answer(404)
                raw, media_type = state.manifests[reference]
                digest = "sha256:" + hashlib.sha256(raw).hexdigest()
                return self.answer(200, raw, {"Content-Type": media_type, "Docker-Content-Digest": digest})
            return self.answer(404)

        def upload(self, path: str, query: dict[str, list[str]], body: bytes) -> None:
            if self.command == "POST":
                session = uuid.uuid4().hex
                state.uploads[session] = bytearray()
                return self.answer(202, headers={"Location": f"/v2/r/blobs/uploads/{session}"})
            session = path.rsplit("/", 1)[1]
            if session not in state.uploads:
                error = {"errors": [{"code": "BLOB_UPLOAD_UNKNOWN", "message": "no such upload"}]}
                return self.answer(404, json.dumps(error).encode())
            if self.command == "DELETE":
                del state.uploads[session]
                return self.answer(204)
            state.uploads[session] += body
            if self.command == "PATCH":
                return self.answer(202, headers={"Location": path, "Range": f"0-{len(state.uploads[session]) - 1}"})
            data = bytes(state.uploads.pop(session))
            digest = query["digest"][0]
            if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
                return self.answer(400, b'{"errors":[{"code":"DIGEST_INVALID","message":"bad"}]}')
            state.blobs[digest] = data
            return self.answer(201, headers={"Docker-Content-Digest": digest})

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

    return Handler


@pytest.fixture
def flaky() -> Iterator[FlakyRegistry]:
    state = FlakyRegistry()
    with serving(handler_for(state)) as host:
        state.host = host
        yield state


def client_for(retries: int = 3) -> RegistryClient:
    return RegistryClient(
        keychain=StaticKeychain(Credentials(), registries=[]),
        options=TransportOptions(retries=retries, backoff=0.01),
        workers=1,  # one upload at a time, so the request log reads in order
    )


def test_get_is_retried_after_503(flaky: FlakyRegistry) -> None:
    flaky.manifests["v1"] = (b'{"schemaVersion":2,"manifests":[]}', "application/vnd.oci.image.index.v1+json")
    flaky.fail("GET", "/v2/r/manifests/", 503, times=2)
    with client_for() as client:
        assert client.get_manifest(Reference.parse(f"{flaky.host}/r:v1")).raw == flaky.manifests["v1"][0]
    assert [status for _, _, status in flaky.requests("GET", "/v2/r/manifests/")] == [503, 503, 200]


def test_retry_after_is_honoured_on_429(flaky: FlakyRegistry) -> None:
    flaky.manifests["v1"] = (b"{}", "application/json")
    flaky.fail("GET", "/v2/r/tags/list", 429, **{"Retry-After": "1"})
    with client_for() as client:
        client.ping(flaky.host)
        started = time.monotonic()
        assert client.tags(Reference.parse(f"{flaky.host}/r")) == ["v1"]
        assert time.monotonic() - started >= 0.9  # the header's second, not the 10 ms backoff
    assert [status for _, _, status in flaky.requests("GET", "/v2/r/tags/list")] == [429, 200]


def test_a_429_asking_for_longer_than_we_wait_is_reported_at_once(flaky: FlakyRegistry) -> None:
    flaky.fail("GET", "/v2/r/tags/list", 429, times=10, **{"Retry-After": "300"})
    with client_for() as client, pytest.raises(RegistryResponseError) as caught:
        client.tags(Reference.parse(f"{flaky.host}/r"))
    assert caught.value.status == 429 and caught.value.retry_after == "300"
    assert len(flaky.requests("GET", "/v2/r/tags/list")) == 1


def test_gives_up_after_the_configured_retries(flaky: FlakyRegistry) -> None:
    flaky.fail("GET", "/v2/r/tags/list", 503, times=10)
    with client_for(retries=2) as client, pytest.raises(RegistryResponseError) as caught:
        client.tags(Reference.parse(f"{flaky.host}/r"))
    assert caught.value.status == 503 and caught.value.temporary
    assert len(flaky.requests("GET", "/v2/r/tags/list")) == 3


def push_image(flaky: FlakyRegistry, tmp_path: Path, client: RegistryClient) -> bytes:
    image = build_image((6000,))
    layout = write_layout(tmp_path / "src", image, "v1")
    push(client, layout, "v1", Reference.parse(f"{flaky.host}/r:v1"), cache=BlobCache(tmp_path / "c"), chunk_size=2048)
    assert flaky.manifests["v1"][0] == image.manifest
    assert all(flaky.blobs[str(d)] == data for d, data in image.blobs.items())
    layer = json.loads(image.manifest)["layers"][0]["digest"]
    return image.blobs[Reference.parse(f"x@{layer}").digest]  # type: ignore[index]


def test_failed_patch_is_not_resent_the_upload_restarts(flaky: FlakyRegistry, tmp_path: Path) -> None:
    flaky.fail("PATCH", "/v2/r/blobs/uploads/", 500)
    with client_for() as client:
        push_image(flaky, tmp_path, client)
    log = [(m, p.rsplit("/", 1)[0] if "/uploads/" in p else p, s) for m, p, s in flaky.log if m != "GET"]
    failed = log.index(("PATCH", "/v2/r/blobs/uploads", 500))
    failed_session = [p for m, p, s in flaky.log if (m, s) == ("PATCH", 500)][0]
    # after the 500: the session is cancelled, the blob looked for, and a new session started
    assert [m for m, _, _ in log[failed + 1 : failed + 4]] == ["DELETE", "HEAD", "POST"]
    assert [e for e in flaky.log if e[1] == failed_session and e[0] == "PATCH"] == [("PATCH", failed_session, 500)]


def test_post_is_retried_only_when_refused(flaky: FlakyRegistry, tmp_path: Path) -> None:
    flaky.fail("POST", "/v2/r/blobs/uploads/", 429, **{"Retry-After": "0"})
    flaky.fail("POST", "/v2/r/blobs/uploads/", 503)
    with client_for() as client:
        push_image(flaky, tmp_path, client)
    trace = [(m, s) for m, p, s in flaky.log if m in ("POST", "HEAD") and "/v2/r/blobs/" in p]
    # 429: refused before anything happened, so the same POST is sent again at once;
    # 503: maybe acted on, so it is not resent; the blob is looked for, then a new upload starts
    assert trace[:5] == [("HEAD", 404), ("POST", 429), ("POST", 503), ("HEAD", 404), ("POST", 202)]


def test_a_registry_refusing_single_request_uploads_gets_plain_ones(flaky: FlakyRegistry, tmp_path: Path) -> None:
    flaky.fail("POST", "/v2/r/blobs/uploads/", 400)  # the first POST, with ?digest= and the body
    with client_for() as client:
        push_image(flaky, tmp_path, client)
        assert flaky.host in client.single_post_refused
    posts = [s for m, p, s in flaky.log if m == "POST"]
    # 400 to the single request, a plain session at once (no restart, no retry), then plain for every blob
    assert posts == [400, 202, 202]
    assert [m for m, p, s in flaky.log if "/v2/r/blobs/" in p][:4] == ["HEAD", "POST", "POST", "PUT"]
