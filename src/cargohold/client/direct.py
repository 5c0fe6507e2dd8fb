"""Blob bodies read straight off the socket: the download fast path.

httpx hands a body up as new ``bytes`` objects, each copied through h11's
receive buffer; for layers that is most of a pull's CPU time. Here a blob GET
is one request on a pooled keep-alive socket, and the body is read with
``recv_into`` into a buffer the caller owns, hashed and written from there.

Only the plain case is taken: a direct connection (no proxy applies to the URL,
:mod:`.proxy`), a ``200``/``206`` answer with a ``Content-Length``
and no content coding, possibly after redirects (to storage: S3, a CDN), which
are followed. Anything else (a 401 whose token must be fetched, an error, a
chunked or HTTP/1.0 body, a failure to connect) returns None before a byte of
body is read, and the caller sends the request through the httpx client, which
owns auth challenges, retries and error reporting. So the fast path never
changes what a pull does, only how fast the body arrives.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Mapping
from typing import Final
from urllib.parse import urljoin, urlsplit

from .errors import TransportError
from .transport import TransportOptions, is_insecure, ssl_context

#: most header bytes accepted in an answer; registries send well under 2 KiB
MAX_HEAD: Final = 64 * 1024
#: idle keep-alive sockets kept per origin
MAX_IDLE: Final = 16
#: how long :meth:`BodyReader.read` waits for more bytes to join to those read (a slow upstream's bytes still
#: go on at once, at least this often)
GATHER_SECONDS: Final = 0.02
#: redirects followed for one blob (httpx's default is 20; storage redirects are one hop)
MAX_REDIRECTS: Final = 5

Origin = tuple[str, str, int]  # scheme, host, port


class BodyReader:
    """The body of one answer: :meth:`readinto` until it returns 0 (or :meth:`read` until b""), then
    :meth:`close`."""

    def __init__(
        self,
        pool: DirectPool,
        url: str,
        origin: Origin,
        sock: socket.socket,
        status: int,
        headers: dict[str, str],
        leftover: bytes,
        length: int,
        reusable: bool,
    ) -> None:
        self.status = status
        self.headers = headers
        self.length = length
        self.url = url
        self._pool, self._origin = pool, origin
        self._sock: socket.socket | None = sock
        self._leftover = leftover
        self._left = length
        self._reusable = reusable

    def readinto(self, view: memoryview) -> int:
        """Fill the front of ``view`` with body bytes; 0 at the end. Raises TransportError if cut short."""
        if self._left <= 0:
            return 0
        if self._leftover:
            n = min(len(self._leftover), len(view), self._left)
            view[:n] = self._leftover[:n]
            self._leftover = self._leftover[n:]
        elif self._sock is None:
            raise TransportError(f"GET {self.url}: read after close")
        else:
            try:
                n = self._sock.recv_into(view, min(len(view), self._left))
            except OSError as exc:
                self._discard()
                raise TransportError(f"GET {self.url}: {exc}") from None
            if n == 0:
                self._discard()
                raise TransportError(f"GET {self.url}: the connection closed {self._left} bytes before the end")
        self._left -= n
        return n

    def read(self, size: int) -> bytes:
        """The next body bytes, ``size`` of them unless the body ends first or the next bytes take longer than
        :data:`GATHER_SECONDS` to come: b"" at the end. Raises TransportError if cut short.

        For a reader that hands each piece on (a pull-through cache): a socket read returns what has arrived, a
        fraction of a MiB at full speed and one TLS record (16 KiB) at most over TLS, and each piece costs its
        consumer a hop between threads and a send. Joining a MiB's reads costs one copy."""
        if self._left <= 0:
            return b""
        if self._leftover:
            data, self._leftover = self._leftover[:size], self._leftover[size:]
            self._left -= len(data)
            return data
        sock = self._sock
        if sock is None:
            raise TransportError(f"GET {self.url}: read after close")
        want = min(size, self._left)
        parts = [self._recv(sock, want)]
        got = len(parts[0])
        if got < want:
            timeout = sock.gettimeout()
            sock.settimeout(GATHER_SECONDS)
            try:
                while got < want and (part := self._recv(sock, want - got, gathering=True)):
                    parts.append(part)
                    got += len(part)
            finally:
                if self._sock is not None:
                    sock.settimeout(timeout)
        self._left -= got
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _recv(self, sock: socket.socket, size: int, gathering: bool = False) -> bytes:
        """Bytes the socket holds or receives next; b"" only when ``gathering`` and none came meanwhile."""
        try:
            data = sock.recv(size)
        except OSError as exc:
            if gathering and isinstance(exc, TimeoutError):
                return b""
            self._discard()
            raise TransportError(f"GET {self.url}: {exc}") from None
        if not data:
            self._discard()
            raise TransportError(f"GET {self.url}: the connection closed {self._left} bytes before the end")
        return data

    def close(self) -> None:
        """Give the socket back to the pool if the whole body was read, else close it."""
        if self._sock is None:
            return
        if self._left == 0 and not self._leftover and self._reusable:
            self._pool.release(self._origin, self._sock)
            self._sock = None
        else:
            self._discard()

    def _discard(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> BodyReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Refused(Exception):
    """The fast path does not take this answer (the caller falls back)."""


class _Redirect(Exception):
    """The answer sends the request elsewhere (its ``Location``)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


def _origin(url: str) -> Origin | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


class DirectPool:
    """Keep-alive sockets per origin, shared by the threads that download layers."""

    def __init__(self, options: TransportOptions) -> None:
        self._options = options
        self._idle: dict[Origin, list[socket.socket]] = {}
        self._contexts: dict[bool, ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for sockets in idle.values():
            for sock in sockets:
                sock.close()

    def release(self, origin: Origin, sock: socket.socket) -> None:
        with self._lock:
            sockets = self._idle.setdefault(origin, [])
            if len(sockets) < MAX_IDLE:
                sockets.append(sock)
                return
        sock.close()

    def _context(self, host: str, port: int) -> ssl.SSLContext:
        verify = not is_insecure(host if port == 443 else f"{host}:{port}", self._options)
        with self._lock:
            context = self._contexts.get(verify)
            if context is None:
                context = self._contexts[verify] = ssl_context(self._options, verify=verify)
        return context

    def _connect(self, origin: Origin) -> socket.socket:
        scheme, host, port = origin
        sock = socket.create_connection((host, port), timeout=self._options.connect_timeout or self._options.timeout)
        sock.settimeout(self._options.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if scheme == "https":
            try:
                return self._context(host, port).wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
        return sock

    def _take(self, origin: Origin) -> socket.socket | None:
        with self._lock:
            sockets = self._idle.get(origin)
            return sockets.pop() if sockets else None

    def get(self, url: str, headers: Mapping[str, str]) -> BodyReader | None:
        """GET ``url``; the body reader of a plain 200/206 answer, else None (nothing of it read).

        Redirects (to storage: S3, a CDN) are followed, at most :data:`MAX_REDIRECTS`, and the
        credentials are dropped on the way to another origin, as httpx does.
        """
        sent = dict(headers)
        for _ in range(MAX_REDIRECTS + 1):
            if self._options.proxy.proxy_for(url) is not None:
                return None  # httpx goes through the proxy; this path connects only directly
            try:
                return self._get_once(url, sent)
            except _Redirect as redirect:
                target = urljoin(url, redirect.location)
                if _origin(target) != _origin(url):
                    sent = {name: value for name, value in sent.items() if name.lower() != "authorization"}
                url = target
        return None

    def _get_once(self, url: str, headers: Mapping[str, str]) -> BodyReader | None:
        origin = _origin(url)
        if origin is None:
            return None
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}"]
        lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() not in _OWN_HEADERS]
        lines.append("Accept-Encoding: identity")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        # a pooled socket may have been closed by the server meanwhile: then once more on a new one
        for reused in (True, False):
            sock = self._take(origin) if reused else None
            if reused and sock is None:
                continue
            try:
                if sock is None:
                    sock = self._connect(origin)
                sock.sendall(head)
                return self._answer(url, origin, sock)
            except _Redirect:
                if sock is not None:
                    sock.close()  # the redirect's own body is not read
                raise
            except (_Refused, OSError, ValueError) as exc:
                if sock is not None:
                    sock.close()
                if isinstance(exc, _Refused) or not reused:
                    return None  # the httpx path retries, and reports what fails
        return None

    def _answer(self, url: str, origin: Origin, sock: socket.socket) -> BodyReader:
        data = b""
        while (end := data.find(b"\r\n\r\n")) < 0:
            if len(data) > MAX_HEAD:
                raise _Refused()
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("closed before an answer")
            data += chunk
        status_line, *header_lines = data[:end].decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        status = int(rest[:3])
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if status in _REDIRECTS and "location" in headers:
            raise _Redirect(headers["location"])
        length = headers.get("content-length", "")
        coding = headers.get("content-encoding", "identity").lower()
        if (
            status not in (200, 206)
            or version != "HTTP/1.1"
            or not length.isdigit()
            or "transfer-encoding" in headers
            or coding != "identity"
        ):
            raise _Refused()
        reusable = "close" not in headers.get("connection", "").lower()
        return BodyReader(self, url, origin, sock, status, headers, data[end + 4 :], int(length), reusable)


#: headers this module writes itself
_OWN_HEADERS: Final = frozenset({"host", "accept-encoding", "connection", "content-length"})
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
