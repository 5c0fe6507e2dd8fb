"""Proxies from ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY``, through a forwarding proxy on loopback.

Loopback is never proxied (Go's rule), so the registry is addressed as
``registry.test:PORT``: a name only the proxy knows, which it maps to
127.0.0.1. The client itself must never look that name up when it is proxied.
For the ``NO_PROXY`` case the test's resolver maps the name to 127.0.0.1 too.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cargohold.client import (
    OCILayout,
    Reference,
    RegistryClient,
    StaticKeychain,
    TransportError,
    TransportOptions,
    pull,
)
from cargohold.client.cache import BlobCache
from cargohold.client.keychain import Credentials
from cargohold.client.proxy import ProxyConfig

from .cli_support import isolated, run  # noqa: F401 - isolated is an autouse fixture
from .conftest import RunningRegistry
from .images import BuiltImage, build_image, write_layout

NAME = "registry.test"
ANONYMOUS = StaticKeychain(Credentials(), registries=[])
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade"})


@dataclass
class Proxy:
    """What the proxy was asked: ``METHOD target`` per request (absolute-form or CONNECT's host:port)."""

    url: str = ""
    seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, line: str) -> None:
        with self.lock:
            self.seen.append(line)


def _upstream(authority: str) -> tuple[str, int]:
    """Where the proxy connects for ``NAME:PORT``: 127.0.0.1 only, anything else is refused."""
    host, _, port = authority.rpartition(":")
    if host != NAME:
        raise PermissionError(authority)
    return "127.0.0.1", int(port)


def _handler(proxy: Proxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    data += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()
                return data
            return self.rfile.read(int(self.headers.get("Content-Length", "0")))

        def _forward(self) -> None:
            proxy.record(f"{self.command} {self.path}")
            body = self._body()
            if not self.path.startswith("http://"):
                self.send_error(400, "absolute-form expected")
                return
            authority, _, rest = self.path[len("http://") :].partition("/")
            try:
                host, port = _upstream(authority)
            except PermissionError:
                self.send_error(502, "unknown host")
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            upstream = http.client.HTTPConnection(host, port, timeout=30)
            try:
                upstream.request(self.command, "/" + rest, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
            finally:
                upstream.close()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            length = answer.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        def do_CONNECT(self) -> None:
            proxy.record(f"CONNECT {self.path}")
            try:
                upstream = socket.create_connection(_upstream(self.path), timeout=30)
            except PermissionError:
                self.send_error(502, "unknown host")
                return
            self.send_response(200, "Connection established")
            self.end_headers()
            self.close_connection = True

            def pump(source: socket.socket, sink: socket.socket) -> None:
                try:
                    while chunk := source.recv(65536):
                        sink.sendall(chunk)
                except OSError:
                    pass
                finally:
                    for sock in (source, sink):
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_RDWR)

            back = threading.Thread(target=pump, args=(upstream, self.connection), daemon=True)
            back.start()
            pump(self.connection, upstream)
            back.join()
            upstream.close()

    return Handler


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    state = Proxy()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names this process resolves; ``NAME`` resolves to 127.0.0.1 (for the unproxied case)."""
    seen: list[str] = []
    original = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        seen.append(name)
        return original("127.0.0.1" if name == NAME else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return seen


def _clear_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def _use_proxy(monkeypatch: pytest.MonkeyPatch, proxy: Proxy, no_proxy: str = "") -> None:
    _clear_proxy_env(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    if no_proxy:
        monkeypatch.setenv("NO_PROXY", no_proxy)


def _port(registry: RunningRegistry) -> str:
    return registry.host.rpartition(":")[2]


def _blob_gets(proxy: Proxy, image: BuiltImage) -> set[str]:
    return {str(d) for d in image.blobs if any(s.startswith("GET ") and s.endswith(f"/blobs/{d}") for s in proxy.seen)}


def test_push_and_pull_over_http_go_through_the_proxy(
    registry: RunningRegistry,
    proxy: Proxy,
    lookups: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _use_proxy(monkeypatch, proxy)
    host = f"{NAME}:{_port(registry)}"
    image = build_image((1000, 300_000, 5_000_000))
    write_layout(tmp_path / "src", image, "v1")
    ref = f"{host}/{registry.repo('proxied')}:v1"
    code, out, err = run(capsys, "push", f"oci:{tmp_path / 'src'}:v1", ref, "--insecure-registry", host, "--json")
    assert code == 0, err
    assert json.loads(out)["digest"] == str(image.digest)
    assert any(s.startswith(("PUT ", "PATCH ", "POST ")) and "/blobs/uploads/" in s for s in proxy.seen)
    assert any(s.startswith(f"PUT http://{host}/v2/") and s.endswith("/manifests/v1") for s in proxy.seen)

    proxy.seen.clear()
    code, _, err = run(capsys, "pull", ref, f"oci:{tmp_path / 'dst'}:v1", "--insecure-registry", host)
    assert code == 0, err
    layout = OCILayout(tmp_path / "dst")
    assert all(layout.blob_path(d).read_bytes() == data for d, data in image.blobs.items())
    # every blob came through the proxy, none on the direct path, and the client never resolved the name
    assert _blob_gets(proxy, image) == {str(d) for d in image.blobs}
    assert NAME not in lookups


def test_push_and_pull_over_https_tunnel_through_connect(
    tls_registry: RunningRegistry,
    proxy: Proxy,
    lookups: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _use_proxy(monkeypatch, proxy)
    host = f"{NAME}:{_port(tls_registry)}"  # its certificate is for 127.0.0.1: not verified
    image = build_image((1000, 300_000))
    write_layout(tmp_path / "src", image, "v1")
    name = tls_registry.repo("tunnel")
    code, _, err = run(capsys, "push", f"oci:{tmp_path / 'src'}:v1", f"{host}/{name}:v1", "--insecure-registry", host)
    assert code == 0, err

    options = TransportOptions(insecure_registries=frozenset({host}), retries=1, backoff=0.01)
    with RegistryClient(keychain=ANONYMOUS, options=options) as client:
        layout = OCILayout(tmp_path / "dst")
        pull(client, Reference.parse(f"{host}/{name}:v1"), layout, tag="v1", cache=BlobCache(tmp_path / "cache"))
        assert client.base_url(host) == f"https://{host}"  # TLS through the tunnel, no fallback to HTTP
    assert all(layout.blob_path(d).read_bytes() == data for d, data in image.blobs.items())
    assert proxy.seen and all(s == f"CONNECT {host}" for s in proxy.seen)
    # the client never resolved the name: no connection of its own, the direct path's included
    assert NAME not in lookups


@pytest.mark.parametrize("no_proxy", ["registry.test", ".test", "*.test", "*", "registry.test:{port}"])
def test_no_proxy_goes_direct_and_takes_the_fast_path(
    no_proxy: str,
    registry: RunningRegistry,
    proxy: Proxy,
    lookups: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = build_image((1000, 300_000))
    write_layout(tmp_path / "src", image, "v1")
    name = registry.repo("direct")
    code, _, err = run(capsys, "push", f"oci:{tmp_path / 'src'}:v1", f"{registry.host}/{name}:v1")
    assert code == 0, err

    _use_proxy(monkeypatch, proxy, no_proxy.format(port=_port(registry)))
    host = f"{NAME}:{_port(registry)}"
    options = TransportOptions(insecure_registries=frozenset({host}), retries=1, backoff=0.01)
    with RegistryClient(keychain=ANONYMOUS, options=options) as client:
        fast: list[str] = []
        direct_get = client.direct.get

        def record(url: str, headers: Any) -> Any:
            body = direct_get(url, headers)
            if body is not None:
                fast.append(url)
            return body

        monkeypatch.setattr(client.direct, "get", record)
        layout = OCILayout(tmp_path / "dst")
        pull(client, Reference.parse(f"{host}/{name}:v1"), layout, tag="v1", cache=BlobCache(tmp_path / "cache"))
    assert all(layout.blob_path(d).read_bytes() == data for d, data in image.blobs.items())
    assert proxy.seen == []
    assert NAME in lookups
    assert len(fast) == len(image.blobs)


def test_no_proxy_port_that_does_not_match_is_proxied(
    registry: RunningRegistry, proxy: Proxy, lookups: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_proxy(monkeypatch, proxy, f"{NAME}:1")
    host = f"{NAME}:{_port(registry)}"
    with RegistryClient(keychain=ANONYMOUS, options=TransportOptions(insecure_registries=frozenset({host}))) as client:
        client.ping(host)
    assert f"GET http://{host}/v2/" in proxy.seen
    assert NAME not in lookups


def test_loopback_is_never_proxied(
    registry: RunningRegistry,
    proxy: Proxy,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = build_image((1000,))
    write_layout(tmp_path / "src", image, "v1")
    _use_proxy(monkeypatch, proxy)  # and no NO_PROXY
    ref = registry.ref(registry.repo("loopback"), "v1")
    assert run(capsys, "push", f"oci:{tmp_path / 'src'}:v1", ref)[0] == 0
    assert run(capsys, "pull", ref, f"oci:{tmp_path / 'dst'}:v1")[0] == 0
    assert proxy.seen == []


@pytest.mark.parametrize(
    ("url", "no_proxy", "proxied"),
    [
        ("https://reg.example.com/v2/", "", True),
        ("https://reg.example.com/v2/", "example.com", False),
        ("https://example.com/v2/", "example.com", False),
        ("https://example.com/v2/", ".example.com", True),  # subdomains only
        ("https://reg.example.com/v2/", ".example.com", False),
        ("https://reg.example.com/v2/", "*.example.com", False),
        ("https://notexample.com/v2/", "example.com", True),
        ("https://REG.Example.COM/v2/", "reg.example.com", False),
        ("https://reg.example.com/v2/", "reg.example.com:443", False),
        ("https://reg.example.com:5000/v2/", "reg.example.com:443", True),
        ("https://reg.example.com:5000/v2/", " other , reg.example.com:5000 ", False),
        ("http://reg.example.com/v2/", "reg.example.com:80", False),
        ("https://10.1.2.3/v2/", "10.0.0.0/8", False),
        ("https://11.1.2.3/v2/", "10.0.0.0/8", True),
        ("https://10.1.2.3:5000/v2/", "10.1.2.3", False),
        ("https://10.1.2.3:5000/v2/", "10.1.2.3:443", True),
        ("https://[fd00::1]:5000/v2/", "fd00::/8", False),
        ("https://[fd00::1]:5000/v2/", "[fd00::1]:5000", False),
        ("https://anything.example/v2/", "*", False),
        ("https://127.0.0.1:5000/v2/", "", False),
        ("https://localhost:5000/v2/", "", False),
        ("https://[::1]:5000/v2/", "", False),
        ("https://registry.localhost/v2/", "", False),
    ],
)
def test_no_proxy_rules(url: str, no_proxy: str, proxied: bool) -> None:
    config = ProxyConfig.parse({"https": "proxy.example:3128", "http": "http://proxy.example:3128", "no": no_proxy})
    assert config.proxy_for(url) == ("http://proxy.example:3128" if proxied else None)


def test_proxy_variables_by_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_proxy_env(monkeypatch)
    monkeypatch.setenv("HTTPS_PROXY", "https://secure.example:443")
    config = TransportOptions().proxy
    assert config.proxy_for("https://reg.example/v2/") == "https://secure.example:443"
    assert config.proxy_for("http://reg.example/v2/") is None  # no HTTP_PROXY: plain HTTP goes direct
    _clear_proxy_env(monkeypatch)
    assert TransportOptions().proxy.proxy_for("https://reg.example/v2/") is None


def test_a_socks_proxy_is_reported_not_bypassed(lookups: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_proxy_env(monkeypatch)
    monkeypatch.setenv("HTTPS_PROXY", "socks5://127.0.0.1:1")
    with (
        RegistryClient(keychain=ANONYMOUS, options=TransportOptions(retries=0)) as client,
        pytest.raises(TransportError, match="only http:// and https:// proxies"),
    ):
        client.ping(f"{NAME}:5000")
    assert NAME not in lookups
