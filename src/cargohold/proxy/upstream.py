"""One upstream registry of the pull-through cache: an async face over :mod:`cargohold.client`.

The client is synchronous (httpx); every call runs in a thread pool of the upstream's own, not in
asyncio's default executor, which the upload path uses for hashing and writing. Credentials and
TLS are the client's (basic, bearer tokens from the upstream's realm cached until they expire,
docker config files), with retries and timeouts cut short: a proxied pull whose upstream is down
falls back to the cached copy, so it must learn of the failure in about a second, not after the
client's minutes of patience.

Failures come in two kinds: :class:`UpstreamError` (no usable answer: unreachable, timeout, TLS,
429, 5xx, bytes not matching their digest) and :class:`UpstreamRefused` (the upstream answered
no: 404, or 401/403 to the proxy's credentials).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar
from urllib.parse import urlsplit

import httpx

from ..client.direct import BodyReader
from ..client.errors import ClientError, RegistryResponseError, check
from ..client.keychain import Credentials, DockerConfig, Keychain, MultiKeychain, StaticKeychain
from ..client.registry import ACCEPT_MANIFESTS, RegistryClient
from ..client.transport import TransportOptions, retry_after, wrap_transport_error
from ..digest import Digest
from ..formats import MANIFEST_MEDIA_TYPES, is_schema1
from ..metrics import recorder as metrics
from ..reference import Reference

log: Final = logging.getLogger("cargohold.proxy")

#: threads per upstream: concurrent requests to it (blob bodies hold one each while they stream)
WORKERS: Final = 16
#: seconds to connect (TCP and TLS), by default: an upstream that does not answer must fail fast,
#: whatever the read timeout (two attempts: about 2 s to learn that it is down)
CONNECT_TIMEOUT: Final = 1.0
#: one quick retry of a failed connection or a 5xx without Retry-After; more would keep a pull
#: waiting that could be served from the cache
RETRIES: Final = 1
BACKOFF: Final = 0.1
#: bytes gathered per hop from the reading thread to the event loop
READ_BATCH: Final = 1 << 20
#: the first hop's: the first bytes go out to the client without waiting for a whole batch
FIRST_BATCH: Final = 64 << 10
#: statuses that mean the upstream said no (rather than could not answer)
REFUSALS: Final = frozenset({401, 403, 404})

T = TypeVar("T")


class UpstreamError(Exception):
    """The upstream could not answer: unreachable, timeout, TLS, 429, 5xx, or it sent wrong bytes."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class UpstreamRefused(Exception):
    """The upstream answered and said no: 404 (unknown), 401/403 (the proxy's credentials)."""

    def __init__(self, message: str, status: int, code: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class UpstreamSettings:
    """What one configured upstream needs."""

    #: the proxy prefix, for logs and counters
    name: str
    #: ``https://registry-1.docker.io``, ``http://127.0.0.1:5001``
    url: str
    #: basic credentials, or those used at the token realm
    username: str | None = None
    password: str | None = None
    #: a bearer token sent as is (no realm round trip)
    token: str | None = None
    #: a docker ``config.json`` to take credentials for the upstream host from
    docker_config: str | None = None
    ca: str | None = None
    insecure: bool = False
    timeout_seconds: float = 30.0
    connect_timeout_seconds: float = CONNECT_TIMEOUT


class _StaticBearer(httpx.Auth):
    """A bearer token given in the configuration, sent as is."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


def _keychain(settings: UpstreamSettings, host: str) -> Keychain:
    """Credentials for the upstream host only; never the server's own ``~/.docker/config.json``."""
    chain: list[Keychain] = []
    if settings.username is not None:
        chain.append(StaticKeychain(Credentials(settings.username, settings.password or ""), [host]))
    if settings.docker_config is not None:
        chain.append(DockerConfig(Path(settings.docker_config)))
    if not chain:
        return StaticKeychain(Credentials(), registries=[])
    return chain[0] if len(chain) == 1 else MultiKeychain(*chain)


def classify(exc: BaseException, what: str) -> Exception:
    """The proxy's view of a client failure (anything else is returned unchanged)."""
    if isinstance(exc, RegistryResponseError):
        if exc.status in REFUSALS:
            return UpstreamRefused(f"{what}: {exc}", exc.status, exc.code_name)
        delay = None
        if exc.retry_after is not None:
            headers = httpx.Response(exc.status, headers={"Retry-After": exc.retry_after})
            delay = retry_after(headers)
        return UpstreamError(f"{what}: {exc}", exc.status, delay)
    if isinstance(exc, httpx.HTTPError):
        return UpstreamError(str(wrap_transport_error(exc, what)))
    if isinstance(exc, ClientError | OSError | ValueError):
        return UpstreamError(f"{what}: {exc}")
    return exc if isinstance(exc, Exception) else UpstreamError(f"{what}: {exc!r}")


def _guarded(fn: Callable[[], T], what: str) -> T:
    try:
        return fn()
    except (ClientError, httpx.HTTPError, OSError, ValueError) as exc:
        raise classify(exc, what) from exc


def _range_header(start: int, length: int | None) -> dict[str, str]:
    if not start and length is None:
        return {}
    end = "" if length is None else str(start + length - 1)
    return {"Range": f"bytes={start}-{end}"}


def _direct_chunks(body: BodyReader) -> Iterator[bytes]:
    """A fast-path body (:mod:`cargohold.client.direct`) in chunks of :data:`FIRST_BATCH` bytes, doubling up to
    :data:`READ_BATCH`."""
    size = FIRST_BATCH
    while True:
        buffer = bytearray(size)
        view, filled = memoryview(buffer), 0
        while filled < size:
            n = body.readinto(view[filled:])
            if not n:
                break
            filled += n
        if not filled:
            return
        yield bytes(buffer) if filled == size else bytes(view[:filled])
        size = min(size * 2, READ_BATCH)


class UpstreamBlob:
    """A blob GET whose body is not read yet. :meth:`chunks` yields exactly the bytes asked for
    (the range, if one was; an upstream ignoring Range has the rest skipped here)."""

    def __init__(
        self, body: httpx.Response | BodyReader, pool: ThreadPoolExecutor, what: str, start: int, length: int | None
    ) -> None:
        self._body = body
        self._pool = pool
        self._what = what
        if isinstance(body, httpx.Response):
            self.status = body.status_code
            headers: Mapping[str, str] = body.headers
            self._iterator = body.iter_bytes()
        else:
            self.status = body.status
            headers = body.headers  # names in lower case
            self._iterator = _direct_chunks(body)
        ranged = self.status == 206
        #: bytes to drop at the front, and the most to yield (an upstream that ignored Range)
        self._skip = 0 if ranged else start
        self._left = length
        header = headers.get("content-length")
        coded = headers.get("content-encoding", "identity").lower() != "identity"
        sent = int(header) if header is not None and header.isdigit() and not coded else None
        #: Content-Length if sent (for a range, the range's length)
        self.size: int | None = sent
        if sent is not None and not ranged and (start or length is not None):
            self.size = max(min(sent - start, length if length is not None else sent), 0)
        #: the whole blob's size: Content-Length of a 200, the total of a 206's Content-Range
        self.total: int | None = sent if not ranged else None
        if ranged:
            total = headers.get("content-range", "").rpartition("/")[2]
            self.total = int(total) if total.isdigit() else None

    def _batch(self, most: int = READ_BATCH) -> list[bytes]:
        batch: list[bytes] = []
        held = 0
        try:
            while held < most and self._left != 0:
                chunk = next(self._iterator, None)
                if chunk is None:
                    break
                if self._skip:
                    dropped = min(self._skip, len(chunk))
                    chunk, self._skip = chunk[dropped:], self._skip - dropped
                if self._left is not None:
                    chunk = chunk[: self._left]
                    self._left -= len(chunk)
                if chunk:
                    batch.append(chunk)
                    held += len(chunk)
        except (ClientError, httpx.HTTPError, OSError) as exc:
            raise classify(exc, self._what) from exc
        return batch

    def read(self, size: int) -> bytes:
        """Blocking (from a worker thread, one at a time): the next bytes of a whole blob's body, at most ``size``
        from the fast path (an httpx body's chunks as they come), b"" at the end. Not for a range (see
        :meth:`chunks`)."""
        if self._skip or self._left is not None:
            raise ValueError("read reads whole blobs only")
        try:
            if isinstance(self._body, BodyReader):
                return self._body.read(size)
            return next(self._iterator, b"")
        except (ClientError, httpx.HTTPError, OSError) as exc:
            raise classify(exc, self._what) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        """The bytes, a batch read ahead: the next batch arrives while the caller uses this one."""
        loop = asyncio.get_running_loop()
        ahead = loop.run_in_executor(self._pool, self._batch, FIRST_BATCH)
        try:
            while True:
                batch = await ahead
                if not batch:
                    return
                ahead = loop.run_in_executor(self._pool, self._batch)
                for chunk in batch:
                    yield chunk
        finally:
            # a caller that stops early: the read in flight ends before the body may be closed
            await asyncio.wait([ahead])
            if not ahead.cancelled():
                ahead.exception()

    async def close(self) -> None:
        if isinstance(self._body, BodyReader):  # gives its socket back or closes it: nothing that waits
            self._body.close()
            return
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._body.close)
        except RuntimeError:  # the upstream was closed (its pool shut down) first
            self._body.close()


class Upstream:
    """One configured upstream registry. ``repository`` arguments are the upstream's names."""

    def __init__(self, settings: UpstreamSettings) -> None:
        parts = urlsplit(settings.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"upstream {settings.url!r}: not an http:// or https:// URL")
        self.settings = settings
        self.name = settings.name
        #: the upstream's ``host[:port]``
        self.host = parts.netloc
        options = TransportOptions(
            insecure_registries=frozenset({self.host}) if settings.insecure else frozenset(),
            ca_bundle=settings.ca,
            timeout=settings.timeout_seconds,
            connect_timeout=min(settings.connect_timeout_seconds, settings.timeout_seconds),
            retries=RETRIES,
            backoff=BACKOFF,
            max_retry_after=0.0,  # the caller decides: serve the cached copy, or pass the 429 on
        )
        self._client = RegistryClient(keychain=_keychain(settings, self.host), options=options)
        self._client.pin_scheme(self.host, parts.scheme)
        #: headers the fast path sends itself (it knows the client's auth flow, not a replaced one)
        self._direct_headers: dict[str, str] = {}
        if settings.token is not None:
            self._client.http.auth = _StaticBearer(settings.token)
            self._direct_headers["Authorization"] = f"Bearer {settings.token}"
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix=f"upstream-{settings.name}")
        #: GETs sent per kind (HEADs are not pulls)
        self.counts: dict[str, int] = {"manifest": 0, "blob": 0}

    def __repr__(self) -> str:
        return f"Upstream({self.name!r}, {self.settings.url!r})"

    def _ref(self, repository: str, reference: str | None = None) -> Reference:
        if reference is None:
            return Reference(self.host, repository)
        if ":" in reference:
            return Reference(self.host, repository, digest=Digest.parse(reference))
        return Reference(self.host, repository, tag=reference)

    async def _run(self, fn: Callable[[], T], what: str) -> T:
        try:
            done = await asyncio.get_running_loop().run_in_executor(self._pool, _guarded, fn, what)
        except (UpstreamError, UpstreamRefused) as exc:
            metrics.proxy_upstream(exc.status)
            raise
        metrics.proxy_upstream(200)
        return done

    def _counted(self, kind: str, repository: str, reference: str) -> None:
        self.counts[kind] += 1
        log.info("upstream %s: GET %s %s@%s (%d %s GETs so far)", self.name, kind, repository, reference,
                 self.counts[kind], kind)

    async def head_manifest(self, repository: str, reference: str) -> tuple[str, str, int]:
        """(digest, media type, size) of a tag or digest, by HEAD (a GET only if HEAD says too little)."""
        ref = self._ref(repository, reference)
        what = f"HEAD {self.settings.url}/v2/{repository}/manifests/{reference}"

        def head() -> tuple[str, str, int] | None:
            response = self._client.request(
                "HEAD", self.host, f"/v2/{repository}/manifests/{ref.reference}",
                headers={"Accept": ACCEPT_MANIFESTS},
            )
            check(response, 200, not_found="MANIFEST_UNKNOWN")
            digest = response.headers.get("Docker-Content-Digest")
            media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            length = response.headers.get("Content-Length")
            if digest and media_type in MANIFEST_MEDIA_TYPES and length and length.isdigit() \
                    and not is_schema1(media_type):
                return str(Digest.parse(digest)), media_type, int(length)
            return None

        found = await self._run(head, what)
        if found is not None:
            return found
        raw, media_type, digest = await self.get_manifest(repository, reference)
        return digest, media_type, len(raw)

    async def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, str]:
        """(raw bytes, media type, digest) of a tag or digest; the digest is checked against the bytes."""
        ref = self._ref(repository, reference)
        self._counted("manifest", repository, reference)
        manifest = await self._run(lambda: self._client.get_manifest(ref),
                                   f"GET {self.settings.url}/v2/{repository}/manifests/{reference}")
        return manifest.raw, manifest.media_type, str(manifest.digest)

    async def blob_size(self, repository: str, digest: Digest) -> int:
        """The blob's size by HEAD; UpstreamRefused(404) if the repository does not have it."""
        what = f"HEAD {self.settings.url}/v2/{repository}/blobs/{digest}"
        size = await self._run(lambda: self._client.blob_size(self._ref(repository), digest), what)
        if size is None:
            raise UpstreamRefused(f"{what}: blob unknown", 404, "BLOB_UNKNOWN")
        if size < 0:
            raise UpstreamError(f"{what}: answered without a Content-Length")
        return size

    async def open_blob(
        self, repository: str, digest: Digest, start: int = 0, length: int | None = None
    ) -> UpstreamBlob:
        """A GET of the blob (from ``start``, ``length`` bytes if given), its body not read yet."""
        what = f"GET {self.settings.url}/v2/{repository}/blobs/{digest}"
        self._counted("blob", repository, str(digest))

        def send() -> httpx.Response | BodyReader:
            path, headers = f"/v2/{repository}/blobs/{digest}", _range_header(start, length)
            # the client's fast path when it takes the answer (a 200/206 with known credentials), else httpx
            body = self._client.get_direct(self.host, path, {**self._direct_headers, **headers})
            if body is not None:
                return body
            response = self._client.request("GET", self.host, path, headers=headers, stream=True)
            if response.status_code not in (200, 206):
                try:
                    response.read()
                finally:
                    response.close()
                check(response, 200, not_found="BLOB_UNKNOWN")
            return response

        response = await self._run(send, what)
        return UpstreamBlob(response, self._pool, what, start, length)

    async def tags(self, repository: str) -> list[str]:
        """Every tag of the repository (all pages)."""
        return await self._run(lambda: self._client.tags(self._ref(repository)),
                               f"GET {self.settings.url}/v2/{repository}/tags/list")

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._client.close)
        self._pool.shutdown(wait=False, cancel_futures=True)

