"""The few ASGI pieces the API needs: a request view and response senders.

Written directly against the ASGI contract rather than a framework: the hot
paths (manifest GET, blob HEAD/GET, upload PATCH) then do no work beyond
parsing what they use, and blob bodies stream without copies.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from ..auth.access import AccessController, Grant
from ..errcodes import RegistryError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

API_VERSION_HEADER = (b"docker-distribution-api-version", b"registry/2.0")
#: distribution-spec: a registry sends at most this many bytes of Warning headers in all
MAX_WARNING_BYTES = 4096


class ClientDisconnected(Exception):
    """The client went away before sending the whole body."""


class Request:
    __slots__ = (
        "scope", "receive", "method", "path", "params", "grant", "access", "id", "_headers", "_query", "_consumed",
    )

    def __init__(self, scope: Scope, receive: Receive, params: dict[str, str]):
        self.scope = scope
        #: names the request in the X-Request-Id header, the access log and error logs
        self.id = os.urandom(8).hex()
        self.receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.params = params
        #: what the access controller granted (set by the app before the handler runs)
        self.grant: Grant = Grant(everything=True)
        self.access: AccessController | None = None
        self._headers: dict[str, str] | None = None
        self._query: dict[str, list[str]] | None = None
        self._consumed = False

    @property
    def headers(self) -> dict[str, str]:
        """Lower-case header names; repeated headers joined with ", " (as for Accept)."""
        if self._headers is None:
            headers: dict[str, str] = {}
            for raw_name, raw_value in self.scope["headers"]:
                name = raw_name.decode("latin-1").lower()
                value = raw_value.decode("latin-1")
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
            self._headers = headers
        return self._headers

    def query(self, name: str) -> str | None:
        values = self.query_all(name)
        return values[0] if values else None

    def query_all(self, name: str) -> list[str]:
        """Every value of a repeated query parameter, in order."""
        if self._query is None:
            self._query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        return self._query.get(name, [])

    def has_query(self, name: str) -> bool:
        self.query(name)
        assert self._query is not None
        return name in self._query

    @property
    def client(self) -> str:
        client = self.scope.get("client")
        return f"{client[0]}:{client[1]}" if client else "-"

    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        # ASCII digits only (int() would take "+1", "1_0" and 5,000-digit numbers are refused by it)
        if value is None or not (value.isascii() and value.isdigit()) or len(value) > 19:
            return None
        return int(value)

    async def stream(self) -> AsyncIterator[bytes]:
        """The request body, chunk by chunk as it arrives."""
        if self._consumed:
            return
        self._consumed = True
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected("client disconnected during the request body")
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    async def body(self, limit: int) -> bytes | None:
        """The whole body if it is at most ``limit`` bytes, else None (rest not read)."""
        parts: list[bytes] = []
        held = 0
        async for chunk in self.stream():
            held += len(chunk)
            if held > limit:
                return None
            parts.append(chunk)
        return b"".join(parts)


class Response:
    """A response's status and headers, plus how its body is sent."""

    __slots__ = ("status", "headers", "body", "stream", "path", "length")

    def __init__(
        self,
        status: int = 200,
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
        *,
        stream: AsyncIterator[bytes] | None = None,
        path: str | None = None,
        length: int | None = None,
    ):
        self.status = status
        self.headers = headers if headers is not None else []
        self.body = body
        self.stream = stream
        self.path = path
        #: Content-Length to announce; defaults to len(body)
        self.length = len(body) if length is None else length

    def header(self, name: str, value: str) -> Response:
        self.headers.append((name.encode("latin-1"), value.encode("latin-1")))
        return self

    def warning(self, text: str) -> Response:
        """A ``Warning: 299 - "text"`` header, as the spec allows them: at most 4096 bytes of them in all."""
        quoted = text.replace("\\", "\\\\").replace('"', '\\"')
        value = f'299 - "{quoted}"'.encode("latin-1", "replace")
        spent = sum(len(v) for n, v in self.headers if n == b"warning")
        if spent + len(value) <= MAX_WARNING_BYTES:
            self.headers.append((b"warning", value))
        return self

    @classmethod
    def json(cls, obj: Any, status: int = 200, content_type: str = "application/json") -> Response:
        body = json.dumps(obj, separators=(",", ":")).encode()
        return cls(status, [(b"content-type", content_type.encode())], body)

    async def send(self, send: Send, scope: Scope, head_only: bool) -> int:
        """Send the response; returns the number of body bytes sent."""
        headers = [API_VERSION_HEADER, (b"content-length", str(self.length).encode()), *self.headers]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        if head_only:
            await send({"type": "http.response.body", "body": b""})
            if self.stream is not None:
                await _close(self.stream)
            return 0
        if self.path is not None:
            if "http.response.pathsend" in scope.get("extensions", {}):
                await send({"type": "http.response.pathsend", "path": self.path})
                return self.length
            self.stream = _file_chunks(self.path)
        if self.stream is not None:
            sent = 0
            try:
                async for chunk in self.stream:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    sent += len(chunk)
            finally:
                await _close(self.stream)
            await send({"type": "http.response.body", "body": b""})
            return sent
        await send({"type": "http.response.body", "body": self.body})
        return len(self.body)


def error_response(failure: RegistryError, /, **fields: Any) -> Response:
    """The answer to ``failure``: its envelope, status and headers (``fields`` go beside ``errors``)."""
    return envelope_response(failure.envelope_entries(), failure.status, failure.headers, **fields)


def envelope_response(
    entries: list[dict[str, Any]], status: int, headers: Mapping[str, str] | None = None, /, **fields: Any
) -> Response:
    """Every error answer is written here: ``{"errors": entries, **fields}``."""
    response = Response.json({**fields, "errors": entries}, status=status)
    for name, value in (headers or {}).items():
        response.header(name, value)
    return response


async def _close(stream: AsyncIterator[bytes]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


async def _file_chunks(path: str) -> AsyncIterator[bytes]:
    import asyncio

    with open(path, "rb") as file:
        while chunk := await asyncio.to_thread(file.read, 1 << 20):
            yield chunk
