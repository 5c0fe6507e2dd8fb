"""The connection pools under the client's transport: httpcore's pools on sockets read a megabyte at a time."""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any, Final

import httpcore
import httpx

from .errors import TransportError

#: bytes asked of the socket per read on an HTTP/1.1 connection (httpcore's default is 64 KiB:
#: a 4 MiB blob then costs 64 reads, each parsed by h11 and handed up through httpx)
HTTP_READ_SIZE: Final = 1024 * 1024


class _LargeReadStream(httpcore.NetworkStream):
    """A connection whose reads ask the socket for at least ``size`` bytes."""

    def __init__(self, stream: httpcore.NetworkStream, size: int) -> None:
        self._stream, self._size = stream, size

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max(max_bytes, self._size), timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _LargeReadStream(self._stream.start_tls(ssl_context, server_hostname, timeout), self._size)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class LargeReads(httpcore.NetworkBackend):
    """httpcore's sockets, read ``size`` bytes at a time.

    httpcore asks for 64 KiB per read on HTTP/1.1, settable only process-wide
    (``HTTP11Connection.READ_NUM_BYTES``); a 4 MiB blob then costs 64 reads, each
    parsed by h11 and handed up through httpx. This backend makes the reads of
    the pools it is given to larger, and leaves every other httpx client alone.
    """

    def __init__(self, size: int = HTTP_READ_SIZE) -> None:
        self._backend = httpcore.SyncBackend()
        self._size = size

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _LargeReadStream(stream, self._size)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
    ) -> httpcore.NetworkStream:
        return _LargeReadStream(self._backend.connect_unix_socket(path, timeout, socket_options), self._size)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class PoolTransport(httpx.HTTPTransport):
    """httpx's transport over a connection pool (direct, or through an HTTP(S) proxy) on
    :class:`LargeReads`: httpx takes no network backend, so the pool is built here."""

    def __init__(
        self,
        context: ssl.SSLContext,
        limits: httpx.Limits,
        backend: httpcore.NetworkBackend,
        proxy: str | None = None,
        proxy_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(verify=context, limits=limits, retries=0)
        self._pool: httpcore.ConnectionPool  # httpx's own, replaced by one on ``backend``
        if proxy is None:
            self._pool = httpcore.ConnectionPool(
                ssl_context=context,
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
                network_backend=backend,
            )
            return
        url = httpx.Proxy(proxy)
        if url.url.scheme not in ("http", "https"):
            raise TransportError(f"proxy {proxy}: only http:// and https:// proxies are supported")
        self._pool = httpcore.HTTPProxy(
            proxy_url=httpcore.URL(
                scheme=url.url.raw_scheme, host=url.url.raw_host, port=url.url.port, target=url.url.raw_path
            ),
            proxy_auth=url.raw_auth,
            proxy_headers=url.headers.raw,
            ssl_context=context,
            proxy_ssl_context=proxy_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )
