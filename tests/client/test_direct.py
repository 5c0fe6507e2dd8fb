"""The blob fast path (client/direct.py) against a registry that misbehaves on cue.

The in-test registry logs each blob request's ``Accept-Encoding``: the fast
path sends ``identity``, httpx its own list, so the wire shows which path
carried each blob. Whatever the registry does, a pull either ends with every
blob verified or fails leaving nothing unverified in the cache or the layout.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from cargohold.client import OCILayout, Reference, RegistryClient, StaticKeychain, TransportError, pull
from cargohold.client.cache import BlobCache
from cargohold.client.keychain import Credentials
from cargohold.digest import Digest

from .images import BuiltImage, build_image
from .inprocess import RegistryHandler, serving

TOKEN = "t0ken"


@dataclass
class BlobRequest:
    path: str
    encoding: str
    client_port: int
    range: str | None
    authorization: str | None

    @property
    def fast(self) -> bool:
        return self.encoding == "identity"


@dataclass
class Registry:
    """Serves ``image`` as ``r:v1``; ``mode`` says how blob GETs are answered."""

    image: BuiltImage
    mode: str = "plain"
    bearer: bool = False
    host: str = ""
    blob_requests: list[BlobRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fast(self) -> list[BlobRequest]:
        return [r for r in self.blob_requests if r.fast and r.path.startswith("/v2/r/blobs/")]


    def slow(self) -> list[BlobRequest]:
        return [r for r in self.blob_requests if not r.fast]


def _handler(state: Registry) -> type[BaseHTTPRequestHandler]:
    class Handler(RegistryHandler):
        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/token":
                scope = parse_qs(url.query).get("scope", [""])[0]
                return self.reply(200, json.dumps({"token": f"{TOKEN}:{scope}"}).encode())
            if state.bearer and url.path.startswith("/v2/"):
                given = self.headers.get("Authorization")
                if (given != f"Bearer {TOKEN}:repository:r:pull") if url.path != "/v2/" else not given:
                    challenge = f'Bearer realm="http://{state.host}/token",service="test"'
                    if url.path != "/v2/":
                        challenge += ',scope="repository:r:pull"'
                    return self.reply(401, b"{}", {"WWW-Authenticate": challenge})
            if url.path == "/v2/":
                return self.reply(200, b"{}")
            if url.path == "/v2/r/manifests/v1":
                return self.reply(200, state.image.manifest, {"Content-Type": state.image.media_type})
            if url.path.startswith(("/v2/r/blobs/", "/storage/")):
                return self.blob(url.path)
            self.reply(404)

        def blob(self, path: str) -> None:
            with state.lock:
                state.blob_requests.append(
                    BlobRequest(
                        path,
                        self.headers.get("Accept-Encoding", ""),
                        self.client_address[1],
                        self.headers.get("Range"),
                        self.headers.get("Authorization"),
                    )
                )
            digest = Digest.parse(path.rsplit("/", 1)[1])
            data = state.image.blobs[digest]
            start = 0
            if self.headers.get("Range"):
                start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
            status = 206 if start else 200
            if state.mode == "redirect" and path.startswith("/v2/"):  # to another origin, as to S3
                port = state.host.rsplit(":", 1)[1]
                return self.reply(307, headers={"Location": f"http://localhost:{port}/storage/{digest}"})
            if state.mode == "chunked":
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
                return
            self.send_response(status)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            if state.mode == "cut" and len(data) > 100_000:
                self.wfile.write(data[start : len(data) // 2])
                self.close_connection = True
                return
            self.wfile.write(data[start:])
            if state.mode == "close":  # drop the connection without saying so (an idle timeout)
                self.close_connection = True

    return Handler


@pytest.fixture
def registry() -> Iterator[Registry]:
    state = Registry(build_image((2048, 70_000, 300_000)))
    with serving(_handler(state)) as host:
        state.host = host
        yield state


def _pull(registry: Registry, client: RegistryClient, tmp_path: Path, cache: BlobCache) -> OCILayout:
    layout = OCILayout(tmp_path / "dst")
    pull(client, Reference.parse(f"{registry.host}/r:v1"), layout, tag="v1", cache=cache)
    return layout


def _assert_pulled(registry: Registry, layout: OCILayout) -> None:
    for digest, data in registry.image.blobs.items():
        assert layout.blob_path(digest).read_bytes() == data
    assert layout.resolve("v1").digest == registry.image.digest


@pytest.fixture
def one_worker() -> Iterator[RegistryClient]:
    with RegistryClient(keychain=StaticKeychain(Credentials("", ""), []), workers=1) as client:
        yield client


def test_plain_answers_take_the_fast_path_on_one_kept_alive_connection(
    registry: Registry, one_worker: RegistryClient, tmp_path: Path, cache: BlobCache
) -> None:
    _assert_pulled(registry, _pull(registry, one_worker, tmp_path, cache))
    assert len(registry.fast()) == len(registry.image.blobs) and not registry.slow()
    assert len({r.client_port for r in registry.fast()}) == 1


def test_a_redirect_to_storage_is_followed_without_the_credentials(
    registry: Registry, tmp_path: Path, cache: BlobCache
) -> None:
    registry.mode, registry.bearer = "redirect", True
    keychain = StaticKeychain(Credentials("someone", "secret"), [registry.host])
    with RegistryClient(keychain=keychain, workers=1) as client:
        _assert_pulled(registry, _pull(registry, client, tmp_path, cache))
    assert not registry.slow()
    asked = [r for r in registry.blob_requests if r.path.startswith("/v2/")]
    fetched = [r for r in registry.blob_requests if r.path.startswith("/storage/")]
    assert len(asked) == len(fetched) == len(registry.image.blobs)
    assert {r.authorization for r in asked} == {f"Bearer {TOKEN}:repository:r:pull"}
    assert {r.authorization for r in fetched} == {None}  # another origin: no token


def test_a_chunked_answer_goes_through_httpx(
    registry: Registry, one_worker: RegistryClient, tmp_path: Path, cache: BlobCache
) -> None:
    registry.mode = "chunked"
    _assert_pulled(registry, _pull(registry, one_worker, tmp_path, cache))
    blobs = len(registry.image.blobs)
    assert len(registry.fast()) == blobs  # tried first, declined before reading a body byte
    assert len(registry.slow()) == blobs


def test_a_connection_closed_while_idle_is_replaced(
    registry: Registry, one_worker: RegistryClient, tmp_path: Path, cache: BlobCache
) -> None:
    registry.mode = "close"
    _assert_pulled(registry, _pull(registry, one_worker, tmp_path, cache))
    assert len(registry.fast()) == len(registry.image.blobs) and not registry.slow()
    assert len({r.client_port for r in registry.fast()}) == len(registry.image.blobs)


def test_a_body_cut_short_fails_then_resumes_with_range(
    registry: Registry, one_worker: RegistryClient, tmp_path: Path, cache: BlobCache
) -> None:
    registry.mode = "cut"
    big = max(registry.image.blobs, key=lambda d: len(registry.image.blobs[d]))
    with pytest.raises(TransportError, match="closed .* before the end"):
        _pull(registry, one_worker, tmp_path, cache)
    assert not cache.has(big)
    assert cache.partial_path(big).stat().st_size == len(registry.image.blobs[big]) // 2
    assert not OCILayout(tmp_path / "dst").has_blob(big)

    registry.mode = "plain"
    registry.blob_requests.clear()
    _assert_pulled(registry, _pull(registry, one_worker, tmp_path, cache))
    resumed = [r for r in registry.fast() if r.path.endswith(big.hex)]
    assert [r.range for r in resumed] == [f"bytes={len(registry.image.blobs[big]) // 2}-"]


def test_bearer_token_learned_on_the_manifest_is_sent_on_the_fast_path(
    registry: Registry, tmp_path: Path, cache: BlobCache
) -> None:
    registry.bearer = True
    keychain = StaticKeychain(Credentials("someone", "secret"), [registry.host])
    with RegistryClient(keychain=keychain, workers=1) as client:
        _assert_pulled(registry, _pull(registry, client, tmp_path, cache))
    assert len(registry.fast()) == len(registry.image.blobs) and not registry.slow()
    assert {r.authorization for r in registry.fast()} == {f"Bearer {TOKEN}:repository:r:pull"}
