"""A request as the ASGI server hands it over: headers, query and body, parsed only when asked for."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ClientDisconnected(Exception):
    """The client went away before sending the whole body."""


class Request:
    __slots__ = ("scope", "receive", "method", "path", "params", "id", "_headers", "_query", "_consumed", "received")

    def __init__(self, scope: Scope, receive: Receive, params: dict[str, str]):
        self.scope = scope
        #: names the request in the X-Request-Id header, the access log and error logs
        self.id = os.urandom(8).hex()
        self.receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.params = params
        self._headers: dict[str, str] | None = None
        self._query: dict[str, list[str]] | None = None
        self._consumed = False
        #: body bytes read so far
        self.received = 0

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

    @property
    def origin(self) -> str:
        """``scheme://host`` as the client reached this server (its Host header, else the listening address)."""
        scheme = self.scope.get("scheme", "http")
        host = self.headers.get("host")
        if not host:
            server = self.scope.get("server") or ("127.0.0.1", 5000)
            host = f"{server[0]}:{server[1]}"
        return f"{scheme}://{host}"

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
                self.received += len(chunk)
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
