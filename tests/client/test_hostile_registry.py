"""A registry (or token service) answering deeply nested or ill-shaped JSON: a ClientError, not a crash."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cargohold.client import Reference, RegistryClient
from cargohold.client.errors import AuthError, ClientError

DEEP = b"[" * 2000 + b"]" * 2000


@pytest.fixture()
def hostile() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes, **headers: str) -> None:
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            host = f"127.0.0.1:{self.server.server_address[1]}"
            if self.path.startswith("/token"):
                return self._send(200, b'{"token": ' + DEEP + b"}")
            if self.path.startswith("/v2/auth/"):
                if "authorization" not in {k.lower() for k in self.headers}:
                    challenge = f'Bearer realm="http://{host}/token",service="hostile"'
                    return self._send(401, b'{"errors": []}', **{"WWW-Authenticate": challenge})
                return self._send(200, b'{"tags": []}')
            if self.path.startswith("/v2/_catalog"):
                return self._send(200, b'{"repositories": ' + DEEP + b"}")
            if self.path.startswith("/v2/shape/tags/list"):
                return self._send(200, b'{"name": "shape", "tags": [1, {"a": 2}]}')
            return self._send(200, b"{}")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


def test_deep_or_ill_shaped_listings(hostile: str, client: RegistryClient) -> None:
    with pytest.raises(ClientError, match="not a JSON object"):
        list(client.catalog(hostile))
    with pytest.raises(ClientError, match="tags is not a list of names"):
        client.tags(Reference.parse(f"{hostile}/shape"))


def test_deep_token_answer(hostile: str, client: RegistryClient) -> None:
    with pytest.raises(AuthError, match="no JSON"):
        client.tags(Reference.parse(f"{hostile}/auth/repo"))
