"""A TCP proxy on a loopback port that plants S3 faults in front of a real S3 server.

Modes (:meth:`FaultProxy.set`), each applied to the connections made after it (the live ones
are cut, so no pooled connection slips past):

- ``forward``: every byte goes to the server and back.
- ``slowdown``: the next ``count`` requests are answered ``503 SlowDown`` (each on a connection
  of its own, which then closes), the later ones are forwarded.
- ``throttle``: as ``slowdown``, but answered ``429 Too Many Requests`` with ``Retry-After: 1``, as a
  registry that rate-limits does (Docker Hub's pull limit).
- ``reset``: the next ``count`` connections are reset as soon as a request arrives.
- ``hang``: connections are accepted and never answered.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field

SLOWDOWN = (b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s")
SLOWDOWN_BODY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
                 b"<Message>Please reduce your request rate.</Message></Error>")
THROTTLE = (b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s")
THROTTLE_BODY = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"pull rate limit reached"}]}'
#: the most requests the ``count`` of a mode stands for: always
ALWAYS = 1 << 30


@dataclass
class FaultProxy:
    target: int
    mode: str = "forward"
    count: int = 0
    #: faults planted so far
    planted: int = 0
    _listener: socket.socket = field(default_factory=lambda: socket.create_server(("127.0.0.1", 0)))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _live: set[socket.socket] = field(default_factory=set)
    _stopped: bool = False

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        threading.Thread(target=self._accept, daemon=True, name="fault-proxy").start()
        return self

    def set(self, mode: str, count: int = ALWAYS) -> None:
        with self._lock:
            self.mode, self.count, self.planted = mode, count, 0
            live, self._live = self._live, set()
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked on it; the client sees it closed

    def stop(self) -> None:
        self._stopped = True
        self.set("forward")
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._live.add(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _fault(self) -> str:
        """The fault for a new request, counted; "forward" once the mode's count is spent."""
        with self._lock:
            if self.mode == "forward" or self.planted >= self.count:
                return "forward"
            self.planted += 1
            return self.mode

    def _serve(self, client: socket.socket) -> None:
        with contextlib.closing(client):
            try:
                head = _read_head(client)
            except OSError:
                return
            if not head:
                return
            fault = self._fault()
            if fault == "hang":
                with contextlib.suppress(OSError):
                    while client.recv(65536):
                        pass
                return
            if fault == "reset":
                _reset(client)
                return
            if fault in ("slowdown", "throttle"):
                with contextlib.suppress(OSError):
                    if b"100-continue" not in head.lower():  # the body comes anyway: take it first
                        _skip_body(client, head)
                    answer = SLOWDOWN % (len(SLOWDOWN_BODY), SLOWDOWN_BODY) if fault == "slowdown" \
                        else THROTTLE % (len(THROTTLE_BODY), THROTTLE_BODY)
                    client.sendall(answer)
                return
            self._forward(client, head)

    def _forward(self, client: socket.socket, head: bytes) -> None:
        try:
            server = socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            return
        with self._lock:
            self._live.add(server)
        with contextlib.closing(server):
            with contextlib.suppress(OSError):
                server.sendall(head)
            back = threading.Thread(target=_pipe, args=(server, client), daemon=True)
            back.start()
            _pipe(client, server)
            back.join()


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        data += chunk
    return data


def _skip_body(sock: socket.socket, head: bytes) -> None:
    header, _, received = head.partition(b"\r\n\r\n")
    length = 0
    for line in header.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    left = length - len(received)
    while left > 0:
        chunk = sock.recv(min(left, 65536))
        if not chunk:
            return
        left -= len(chunk)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
