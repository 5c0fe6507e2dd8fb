"""HTTP transport to registries: scheme choice, TLS options, retries, timeouts.

Layers, outermost first (as ggcr's ``remote/transport``)::

    httpx.Client(auth=RegistryAuth)      401 -> token -> retry   (auth.py)
      └── RetryTransport                 backoff on connection errors, 429 and 5xx
            └── httpx.HTTPTransport      connection pool, TLS

One :class:`httpx.Client` is shared by every registry, so connections are reused
and the client is safe to use from the worker threads that move layers in parallel.
"""

from __future__ import annotations

import ipaddress
import random
import ssl
import time
from dataclasses import dataclass, field
from typing import Final

import httpx

from .errors import TransportError

#: methods a retry cannot make worse; POST starts a new upload each time, so it is not retried on errors
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
#: statuses that mean "try again later"
RETRY_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
USER_AGENT: Final = "cargohold-client/0.1"


@dataclass(frozen=True, slots=True)
class TransportOptions:
    """How to reach registries. Every default follows docker's and skopeo's."""

    #: registries (``host[:port]``) spoken to over plain HTTP; loopback hosts always are, as docker does
    insecure_registries: frozenset[str] = frozenset()
    #: verify server certificates; off only for registries you trust on another channel
    verify_tls: bool = True
    #: PEM bundle of extra certificate authorities (a private registry's CA)
    ca_bundle: str | None = None
    #: client certificate for mutual TLS: PEM file, or (certificate, key) files
    client_cert: str | tuple[str, str] | None = None
    #: seconds to connect and between bytes; layers can be large, so no total deadline
    timeout: float = 60.0
    #: attempts after the first on a transient failure; 3 covers a registry restart
    retries: int = 3
    #: first backoff delay in seconds, doubled each attempt (plus jitter)
    backoff: float = 0.5
    #: plain HTTP for every registry (``--insecure`` with no list): tests and labs
    insecure_all: bool = False
    #: connections kept per host; parallel layer transfers use several
    max_connections: int = field(default=16)


def is_loopback(registry: str) -> bool:
    """True for ``localhost``, ``127.0.0.0/8`` and ``::1`` (with or without a port)."""
    host = registry
    if host.startswith("["):
        host = host[1 : host.find("]")]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def scheme_for(registry: str, options: TransportOptions) -> str:
    """``http`` for insecure and loopback registries, else ``https``."""
    if options.insecure_all or registry in options.insecure_registries or is_loopback(registry):
        return "http"
    return "https"


def _replayable(request: httpx.Request) -> bool:
    return isinstance(request.stream, httpx.ByteStream)


class RetryTransport(httpx.BaseTransport):
    """Retry transient failures with exponential backoff and jitter.

    Only requests whose body can be sent again (bytes, not a stream) are retried;
    connection errors are retried for idempotent methods only, because a POST
    that reached the server may have started an upload session.
    """

    def __init__(self, inner: httpx.BaseTransport, retries: int, backoff: float) -> None:
        self._inner = inner
        self._retries = retries
        self._backoff = backoff

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None:
            after = response.headers.get("Retry-After", "")
            if after.isdigit():
                return min(float(after), 30.0)
        return float(self._backoff * (2**attempt) * (0.5 + random.random()))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        attempt = 0
        while True:
            can_retry = attempt < self._retries and _replayable(request)
            try:
                response = self._inner.handle_request(request)
            except (
                httpx.ConnectError,
                httpx.ReadError,
                httpx.WriteError,
                httpx.RemoteProtocolError,
                httpx.TimeoutException,
            ):
                if not (can_retry and request.method in IDEMPOTENT_METHODS):
                    raise
                time.sleep(self._delay(attempt, None))
                attempt += 1
                continue
            if can_retry and response.status_code in RETRY_STATUSES:
                delay = self._delay(attempt, response)
                response.close()
                time.sleep(delay)
                attempt += 1
                continue
            return response

    def close(self) -> None:
        self._inner.close()


def ssl_context(options: TransportOptions) -> ssl.SSLContext | bool:
    """The TLS settings for httpx: a context when a CA bundle or client certificate is given."""
    if not options.verify_tls:
        return False
    if options.ca_bundle is None and options.client_cert is None:
        return True
    context = ssl.create_default_context()
    if options.ca_bundle is not None:
        context.load_verify_locations(cafile=options.ca_bundle)
    if isinstance(options.client_cert, tuple):
        context.load_cert_chain(options.client_cert[0], options.client_cert[1])
    elif options.client_cert is not None:
        context.load_cert_chain(options.client_cert)
    return context


def build_http_client(options: TransportOptions, auth: httpx.Auth | None) -> httpx.Client:
    """One pooled, retrying httpx client for all registries."""
    limits = httpx.Limits(
        max_connections=options.max_connections * 4, max_keepalive_connections=options.max_connections
    )
    inner = httpx.HTTPTransport(verify=ssl_context(options), limits=limits, retries=0)
    return httpx.Client(
        transport=RetryTransport(inner, options.retries, options.backoff),
        auth=auth,
        timeout=httpx.Timeout(options.timeout),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=True,  # blob GETs redirect to storage (S3, CDN)
    )


def wrap_transport_error(exc: httpx.HTTPError, what: str) -> TransportError:
    """A :class:`TransportError` naming what failed; httpx's message alone is often empty."""
    text = str(exc) or type(exc).__name__
    return TransportError(f"{what}: {text}")
