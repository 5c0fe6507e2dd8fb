"""HTTP transport to registries: scheme choice, TLS options, retries, timeouts.

Layers, outermost first (as ggcr's ``remote/transport``)::

    httpx.Client(auth=RegistryAuth)      401 -> token -> retry   (auth.py)
      └── RetryTransport                 backoff on connection errors, 429 and 5xx
            └── TLSRouter                insecure registries get a context that skips verification;
                  │                      proxied requests (proxy.py) a pool per proxy
                  └── PoolTransport      connection pool, TLS, the proxy if any (pool.py)
                        └── LargeReads     this client's sockets, read HTTP_READ_SIZE at a time

One :class:`httpx.Client` is shared by every registry, so connections are reused
and the client is safe to use from the worker threads that move layers in parallel.

Scheme choice (docker's and skopeo's rules; :func:`endpoint_policy`):

=====================================  ==========================  =====================================
registry                               HTTPS                       plain HTTP fallback
=====================================  ==========================  =====================================
insecure (``insecure_registries``,     certificate not verified    on any failure to connect over TLS
``insecure_all``, ``verify_tls=False``)
loopback (``localhost``, 127/8, ::1)   verified                    only when the server does not speak
                                                                   TLS; a bad certificate is an error
any other                              verified                    never
=====================================  ==========================  =====================================

Retry policy: idempotent requests (GET, HEAD, PUT, DELETE) are retried on
connection failures and on 408/429/5xx, except 507 (the registry is out of space:
it stays so until someone frees space); an answer asking (``Retry-After``) for
a longer wait than ``max_retry_after`` (:data:`MAX_RETRY_AFTER`) is handed up at once, since a retry
sooner would be refused again (a token service's lockout after failed logins). POST and PATCH are retried only where
the registry cannot have acted on them: 429 (refused before processing) and a
connection that was never established. A failed PATCH is not resent blindly;
:func:`cargohold.client.pull.send_blob` restarts the whole upload instead,
after checking whether the blob arrived.
"""

from __future__ import annotations

import contextlib
import email.utils
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Final
from urllib.parse import urlsplit

import httpx

from .errors import TLSError, TransportError
from .pool import LargeReads, PoolTransport
from .proxy import ProxyConfig, is_loopback

#: methods a retry cannot make worse (a PUT or DELETE sent twice has the effect of one)
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
#: statuses that mean "try again later" (not 507 Insufficient Storage: that lasts)
RETRY_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
#: statuses after which a non-idempotent request is known not to have been acted on
REFUSED_STATUSES: Final = frozenset({429})
#: longest Retry-After we wait for; an answer asking for more is handed up at once
MAX_RETRY_AFTER: Final = 30.0
USER_AGENT: Final = "cargohold-client/0.1"


@dataclass(frozen=True, slots=True)
class TransportOptions:
    """How to reach registries. Every default follows docker's and skopeo's."""

    #: registries (``host[:port]``) whose certificates are not checked and that may answer plain HTTP
    insecure_registries: frozenset[str] = frozenset()
    #: verify server certificates; False makes every registry insecure, as skopeo's ``--tls-verify=false``
    verify_tls: bool = True
    #: PEM bundle of extra certificate authorities (a private registry's CA)
    ca_bundle: str | None = None
    #: client certificate for mutual TLS: PEM file, or (certificate, key) files
    client_cert: str | tuple[str, str] | None = None
    #: seconds to connect and between bytes; layers can be large, so no total deadline
    timeout: float = 60.0
    #: seconds to connect, if shorter than ``timeout`` (a proxy gives up on a dead upstream fast)
    connect_timeout: float | None = None
    #: attempts after the first on a transient failure; 3 covers a registry restart
    retries: int = 3
    #: first backoff delay in seconds, doubled each attempt (plus jitter)
    backoff: float = 0.5
    #: longest ``Retry-After`` waited for before a retry; an answer asking for more is handed up at once
    max_retry_after: float = MAX_RETRY_AFTER
    #: every registry insecure (``--insecure``): tests and labs
    insecure_all: bool = False
    #: connections kept per host; parallel layer transfers use several
    max_connections: int = field(default=16)
    #: proxies; by default from ``HTTP_PROXY``, ``HTTPS_PROXY`` and ``NO_PROXY`` (:mod:`.proxy`)
    proxy: ProxyConfig = field(default_factory=ProxyConfig.from_environment)


class Fallback(Enum):
    """When a registry reached over HTTPS may be retried over plain HTTP."""

    NEVER = "never"
    #: the server does not speak TLS (a certificate it presents is still checked)
    NO_TLS = "no-tls"
    #: any failure to connect over TLS (docker's insecure registries)
    ANY = "any"


def is_insecure(registry: str, options: TransportOptions) -> bool:
    """Certificates of this registry are not verified (docker's "insecure registry")."""
    return options.insecure_all or not options.verify_tls or registry in options.insecure_registries


def endpoint_policy(registry: str, options: TransportOptions) -> Fallback:
    """How ``registry`` may fall back to plain HTTP (see the module docstring's table)."""
    if is_insecure(registry, options):
        return Fallback.ANY
    if is_loopback(registry):
        return Fallback.NO_TLS
    return Fallback.NEVER


def _chain(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def tls_failure(exc: BaseException) -> str | None:
    """``"certificate"`` or ``"alert"`` when the peer speaks TLS and refused us or we refused it;
    ``"protocol"`` for other TLS failures (a plain-HTTP server answering a handshake); else None."""
    chain = _chain(exc)
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain):
        return "certificate"
    text = " ".join(str(e) for e in chain)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "certificate"
    if "ALERT" in text.upper() and "SSL" in text.upper():
        return "alert"
    if any(isinstance(e, ssl.SSLError) for e in chain) or "[SSL" in text:
        return "protocol"
    return None


def may_fall_back(exc: BaseException, policy: Fallback) -> bool:
    """Whether an HTTPS failure ``exc`` allows trying plain HTTP under ``policy``."""
    if policy is Fallback.ANY:
        return True
    if policy is Fallback.NO_TLS:
        return tls_failure(exc) == "protocol"
    return False


def speaks_tls(host: str, timeout: float) -> bool | None:
    """Whether ``host`` (``name[:port]``, port 443 if none) completes or refuses a TLS handshake
    (True), or answers it with something that is not TLS (False); None if it cannot be reached.

    Nothing is verified and no request is sent: for loopback registries, where HTTPS may
    fall back to HTTP only when the server does not speak TLS, this tells that case apart
    before paying for a verifying TLS context (~25 ms to parse the CA bundle).
    """
    parts = urlsplit(f"https://{host}")
    if parts.hostname is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=parts.hostname),
        ):
            return True
    except ssl.SSLError as exc:
        return tls_failure(exc) != "protocol"
    except (OSError, ValueError):
        return None


def _connection_never_made(exc: BaseException) -> bool:
    """The request cannot have reached the server: refused, unreachable, or no TLS session."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _replayable(request: httpx.Request) -> bool:
    return isinstance(request.stream, httpx.ByteStream)


class RetryTransport(httpx.BaseTransport):
    """Retry transient failures with exponential backoff and jitter (policy: module docstring).

    Only requests whose body can be sent again (bytes, not a stream) are retried.
    TLS failures are not retried: a wrong certificate stays wrong.
    """

    def __init__(
        self,
        inner: httpx.BaseTransport,
        retries: int,
        backoff: float,
        sleep: Callable[[float], None] = time.sleep,
        max_retry_after: float = MAX_RETRY_AFTER,
    ) -> None:
        self._inner = inner
        self._retries = retries
        self._backoff = backoff
        self._sleep = sleep
        self._max_retry_after = max_retry_after

    def _delay(self, attempt: int) -> float:
        return float(self._backoff * (2**attempt) * (0.5 + random.random()))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        attempt = 0
        idempotent = request.method in IDEMPOTENT_METHODS
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
            ) as exc:
                if not can_retry or tls_failure(exc) is not None:
                    raise
                if not (idempotent or _connection_never_made(exc)):
                    raise
                self._sleep(self._delay(attempt))
                attempt += 1
                continue
            status = response.status_code
            statuses = RETRY_STATUSES if idempotent else REFUSED_STATUSES
            if can_retry and status in statuses:
                delay = retry_after(response)
                if delay is not None and delay > self._max_retry_after:
                    return response  # a retry within our patience would be refused again
                response.close()
                delay = self._delay(attempt) if delay is None else delay
                self._sleep(delay)
                attempt += 1
                continue
            return response

    def close(self) -> None:
        self._inner.close()


#: which pool a request goes to: verify certificates (True), don't (False), plain HTTP (None);
#: and the proxy's URL, or None for a direct connection
PoolKey = tuple[bool | None, str | None]


class TLSRouter(httpx.BaseTransport):
    """Send each request through the transport for its security (certificates verified,
    not verified for insecure registries, or plain HTTP) and its proxy, if any.

    Each transport is built on first use: a verifying TLS context costs ~25 ms (it parses
    the system's CA bundle), and a run against a plain-HTTP registry needs none.
    """

    def __init__(self, build: Callable[[PoolKey], httpx.BaseTransport], options: TransportOptions) -> None:
        self._build = build
        self._transports: dict[PoolKey, httpx.BaseTransport] = {}
        self._options = options
        self._lock = threading.Lock()

    def _transport(self, key: PoolKey) -> httpx.BaseTransport:
        with self._lock:
            transport = self._transports.get(key)
            if transport is None:
                transport = self._transports[key] = self._build(key)
            return transport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        proxy = self._options.proxy.proxy_for(str(request.url))
        if request.url.scheme != "https":
            return self._transport((None, proxy)).handle_request(request)
        insecure = is_insecure(request.url.netloc.decode("ascii"), self._options)
        return self._transport((not insecure, proxy)).handle_request(request)

    def close(self) -> None:
        with self._lock:
            transports, self._transports = self._transports, {}
        for transport in transports.values():
            transport.close()


def ssl_context(options: TransportOptions, *, verify: bool = True) -> ssl.SSLContext:
    """The TLS context: system CAs plus ``ca_bundle``, the client certificate, checks on or off."""
    context = ssl.create_default_context()  # the system's CAs, as docker and skopeo use
    if context.cert_store_stats()["x509_ca"] == 0:  # no system store (some macOS builds): certifi's
        with contextlib.suppress(ImportError):
            import certifi

            context.load_verify_locations(cafile=certifi.where())
    if options.ca_bundle is not None:
        context.load_verify_locations(cafile=options.ca_bundle)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
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
    backend = LargeReads()

    def pool(key: PoolKey) -> httpx.HTTPTransport:
        verify, proxy = key
        # plain HTTP (None): httpx wants a context anyway; this one is never used for a handshake
        context = ssl_context(options, verify=verify) if verify is not None else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # an https:// proxy is verified with the same CAs as registries (Go's transports do the same)
        proxy_context = ssl_context(options) if proxy is not None and proxy.startswith("https:") else None
        return PoolTransport(context, limits, backend, proxy, proxy_context)

    router = TLSRouter(pool, options)
    return httpx.Client(
        transport=RetryTransport(router, options.retries, options.backoff, max_retry_after=options.max_retry_after),
        auth=auth,
        timeout=httpx.Timeout(options.timeout, connect=options.connect_timeout or options.timeout),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=True,  # blob GETs redirect to storage (S3, CDN)
    )


def wrap_transport_error(exc: httpx.HTTPError, what: str) -> TransportError:
    """A :class:`TransportError` naming what failed; httpx's message alone is often empty.

    TLS failures become :class:`TLSError` with a hint at the option that fixes them.
    """
    text = str(exc) or type(exc).__name__
    kind = tls_failure(exc)
    if kind == "certificate":
        return TLSError(
            f"{what}: TLS certificate not trusted ({text}); "
            "trust its CA with --ca-cert (ca_bundle) or skip verification with --tls-verify=false"
        )
    if kind == "alert":
        return TLSError(
            f"{what}: the server refused the TLS handshake ({text}); "
            "does it require a client certificate (--cert/--key)?"
        )
    if kind == "protocol":
        return TLSError(f"{what}: TLS handshake failed ({text}); is the server speaking plain HTTP?")
    return TransportError(f"{what}: {text}")
