"""A small blocking HTTP/1.1 client on raw sockets, for load that the client itself must not limit.

Bodies go out with ``socket.sendfile`` (zero-copy from a file) or ``sendall``;
response bodies are read with ``recv_into`` into one reused buffer and counted,
not kept, unless asked for. One connection, kept alive, used by one thread.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import urlsplit

_RECV = 4 << 20


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    length: int = 0  # body bytes received (kept or not)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class HTTPError(RuntimeError):
    pass


class Connection:
    """One keep-alive connection to ``host:port``."""

    def __init__(self, host: str, port: int, timeout: float = 120.0):
        self.host, self.port, self.timeout = host, port, timeout
        self._sock: socket.socket | None = None
        self._buf = bytearray(_RECV)
        self._view = memoryview(self._buf)
        self._pending = b""

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock, self._pending = sock, b""
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        target: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        file: tuple[BinaryIO, int, int] | None = None,
        keep: bool = True,
    ) -> Reply:
        """Send one request; ``file`` = (file, offset, count) is sent with sendfile.

        ``target`` may be an absolute URL (Distribution's Location headers are).
        With ``keep`` false the body is counted but not kept.
        """
        if "://" in target:
            parts = urlsplit(target)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
        length = len(body) if body is not None else (file[2] if file is not None else 0)
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        sent_headers = {k.lower(): v for k, v in (headers or {}).items()}
        if method in ("POST", "PUT", "PATCH") or length:
            sent_headers.setdefault("content-length", str(length))
        lines += [f"{k}: {v}" for k, v in sent_headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        sock = self._connect()
        try:
            if body is not None and len(body) < 65536:
                sock.sendall(head + body)
            else:
                sock.sendall(head)
                if body is not None:
                    sock.sendall(body)
                elif file is not None:
                    sock.sendfile(file[0], file[1], file[2])
            return self._read_reply(method == "HEAD", keep)
        except BaseException:
            self.close()
            raise

    def _fill(self) -> bytes:
        assert self._sock is not None
        n = self._sock.recv_into(self._view)
        if n == 0:
            raise HTTPError("connection closed by the server")
        return bytes(self._view[:n])

    def _read_reply(self, head_only: bool, keep: bool) -> Reply:
        data = self._pending
        while b"\r\n\r\n" not in data:
            data += self._fill()
        raw_head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
        reply = Reply(int(status_line.split(" ", 2)[1]))
        for line in header_lines:
            name, _, value = line.partition(":")
            reply.headers[name.strip().lower()] = value.strip()
        if head_only or reply.status in (204, 304) or 100 <= reply.status < 200:
            self._pending = rest
            return reply
        if reply.headers.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                while b"\r\n" not in rest:
                    rest += self._fill()
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                while len(rest) < size + 2:
                    rest += self._fill()
                if size == 0:
                    rest = rest[2:]
                    break
                body += rest[:size]
                rest = rest[size + 2 :]
            self._pending = rest
            reply.length = len(body)
            reply.body = bytes(body) if keep else b""
            return reply
        length = int(reply.headers.get("content-length", "0"))
        if len(rest) >= length:
            reply.body, self._pending, reply.length = (rest[:length] if keep else b""), rest[length:], length
            return reply
        got = len(rest)
        parts = [rest] if keep else []
        assert self._sock is not None
        while got < length:
            n = self._sock.recv_into(self._view, min(_RECV, length - got))
            if n == 0:
                raise HTTPError("connection closed in the middle of a body")
            if keep:
                parts.append(bytes(self._view[:n]))
            got += n
        self._pending = b""
        reply.length = got
        reply.body = b"".join(parts) if keep else b""
        return reply


def expect(reply: Reply, *statuses: int) -> Reply:
    if reply.status not in statuses:
        raise HTTPError(f"HTTP {reply.status} (wanted {statuses}): {reply.body[:300]!r}")
    return reply
