"""A response: status, headers, and a body sent from bytes, a stream or a file."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from .request import Scope, Send

API_VERSION_HEADER = (b"docker-distribution-api-version", b"registry/2.0")
#: distribution-spec: a registry sends at most this many bytes of Warning headers in all
MAX_WARNING_BYTES = 4096


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


async def _close(stream: AsyncIterator[bytes]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


async def _file_chunks(path: str) -> AsyncIterator[bytes]:
    with open(path, "rb") as file:
        while chunk := await asyncio.to_thread(file.read, 1 << 20):
            yield chunk
