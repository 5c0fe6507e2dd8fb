"""A webhook receiver for the tests: a real HTTP server on a free loopback port, in a thread.

It records every request (arrival time, path, headers, body) and answers as
told: a queue of statuses, then ``default``; or a behaviour for every request
(``hang``: never answer; ``huge``: 10 MB of answer; ``redirect``: to itself,
forever). ``stop()`` closes the port (a receiver that is down), ``start()``
opens it again on the same port.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.servers import free_port


@dataclass(frozen=True)
class Received:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self.json["events"]
        return events


class Receiver:
    def __init__(self, port: int | None = None, *, statuses: list[int] | None = None, default: int = 200,
                 behaviour: str = "answer", tls: tuple[Path, Path] | None = None) -> None:
        self.port = port or free_port()
        #: (certificate, key): serve HTTPS
        self.tls = tls
        self.statuses = list(statuses or [])
        self.default = default
        self.behaviour = behaviour
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._release = threading.Event()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.received.append(Received(time.monotonic(), self.path, dict(self.headers), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else receiver.default
                behaviour = receiver.behaviour
                if behaviour == "hang":
                    receiver._release.wait(120)
                    return
                if behaviour == "redirect":
                    self.send_response(307)
                    self.send_header("Location", self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                answer = b"x" * (10 * 1024 * 1024) if behaviour == "huge" else b"ok"
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(answer)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def server_bind(self) -> None:
                self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                super().server_bind()

        self._release.clear()
        self._server = Server(("127.0.0.1", self.port), Handler)
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, name="receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._release.set()
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def requests(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def events(self) -> list[dict[str, Any]]:
        """Every event of every Distribution envelope received, in the order they came."""
        return [event for request in self.requests() for event in request.events]

    def wait_for_events(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events()
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"{len(self.events())} events of {count} within {timeout} s")

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """The requests once at least ``count`` have come (AssertionError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.requests()
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"{len(self.requests())} requests of {count} within {timeout} s")


@contextlib.contextmanager
def receiving(**kw: Any) -> Iterator[Receiver]:
    receiver = Receiver(**kw).start()
    try:
        yield receiver
    finally:
        receiver.stop()
