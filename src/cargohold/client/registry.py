"""The client's entry point: :class:`RegistryClient`, one typed method per Distribution API call.

This is the "remote" tier (ggcr's ``pkg/v1/remote``): it speaks the API and
verifies what it receives, but knows nothing of local files. Higher tiers
(:mod:`.image`, :mod:`.pull`, :mod:`.push`, :mod:`.copy`) are built on it::

    with RegistryClient() as client:
        ref = Reference.parse("localhost:5000/team/app:1.0")
        for tag in client.tags(ref): ...
        manifest = client.get_manifest(ref)       # bytes + media type + verified digest

Blob transfers live in :mod:`.blobs`, re-exported here as methods.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Self

import httpx

from .. import jsontext
from ..digest import Digest
from ..formats import MANIFEST_MEDIA_TYPES, Manifest, MediaType, is_schema1, parse_manifest
from ..reference import DOCKER_HUB, DOCKER_HUB_API, Reference
from . import blob_uploads, blobs
from .auth import RegistryAuth, TokenCache
from .direct import BodyReader, DirectPool
from .errors import ClientError, DigestMismatch, ManifestTooLarge, check
from .keychain import DockerConfig, Keychain
from .transport import (
    Fallback,
    TransportOptions,
    build_http_client,
    endpoint_policy,
    may_fall_back,
    speaks_tls,
    wrap_transport_error,
)

#: ggcr's limit on a manifest we read: real ones are kilobytes; this stops a hostile endpoint
MANIFEST_LIMIT: Final = 4 * 1024 * 1024
#: ECR refuses n > 1000, so no larger page is asked for (ggcr remote/options.go)
DEFAULT_PAGE_SIZE: Final = 1000
#: concurrent requests for per-tag metadata and layer transfers; more rarely helps one registry
DEFAULT_WORKERS: Final = 4
#: every manifest type we can read, preferred first; schema 1 last so registries convert when they can
ACCEPT_MANIFESTS: Final = ", ".join(
    [
        MediaType.OCI_INDEX,
        MediaType.DOCKER_MANIFEST_LIST,
        MediaType.OCI_MANIFEST,
        MediaType.DOCKER_MANIFEST,
        MediaType.DOCKER_SCHEMA1_SIGNED,
        MediaType.DOCKER_SCHEMA1,
    ]
)
_LINK: Final = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    """What a HEAD on a manifest tells: enough to resolve a tag without its bytes."""

    digest: Digest
    media_type: str
    size: int


@dataclass(frozen=True, slots=True)
class RawManifest:
    """A manifest exactly as served, with its verified digest."""

    raw: bytes
    media_type: str
    digest: Digest

    @property
    def size(self) -> int:
        return len(self.raw)

    def parse(self) -> Manifest:
        """The typed view (:mod:`cargohold.formats`); raises ``ManifestError`` if malformed."""
        return parse_manifest(self.raw, self.media_type or None)


@dataclass(frozen=True, slots=True)
class TagInfo:
    """A tag with what it points to."""

    tag: str
    digest: Digest
    media_type: str
    size: int


class RegistryClient:
    """A client for any registry speaking the OCI Distribution API.

    :param keychain: where credentials come from; default docker's ``config.json``
    :param options: scheme, TLS, timeouts and retries (:class:`TransportOptions`)
    :param token_cache: a file to keep bearer tokens in between runs (None: memory only)
    :param workers: parallel requests for tag metadata and blob transfers
    """

    def __init__(
        self,
        *,
        keychain: Keychain | None = None,
        options: TransportOptions | None = None,
        token_cache: Path | None = None,
        workers: int = DEFAULT_WORKERS,
    ) -> None:
        self.options = options or TransportOptions()
        self.keychain: Keychain = keychain if keychain is not None else DockerConfig()
        self.auth = RegistryAuth(self.keychain, TokenCache(token_cache))
        self.http = build_http_client(self.options, self.auth)
        #: raw keep-alive sockets for blob bodies (:mod:`.direct`)
        self.direct = DirectPool(self.options)
        self.workers = workers
        self._pinged: set[str] = set()
        #: one ping at a time: threads that start together wait for the first one's answer
        self._ping_lock = threading.Lock()
        #: registries that answered a single-request upload (``POST ?digest=``) without taking it
        self.single_post_refused: set[str] = set()
        #: the scheme each registry answered on at its ping (HTTPS, or HTTP after a fallback)
        self._schemes: dict[str, str] = {}
        #: registries whose scheme was given (:meth:`pin_scheme`): their ping tries no other
        self._pinned: set[str] = set()

    def close(self) -> None:
        self.http.close()
        self.direct.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------------

    def pin_scheme(self, registry: str, scheme: str) -> None:
        """Speak ``scheme`` (``http`` or ``https``) to ``registry``, with no fallback: for a registry
        configured by URL, whose scheme is known and not to be guessed."""
        self._schemes[registry] = scheme
        self._pinned.add(registry)

    def base_url(self, registry: str) -> str:
        """``scheme://host`` of a registry; Docker Hub's API lives on another host than its name.

        HTTPS unless the ping found the registry answering plain HTTP only
        (allowed for insecure and loopback registries, see :mod:`.transport`).
        """
        host = DOCKER_HUB_API if registry == DOCKER_HUB else registry
        return f"{self._schemes.get(registry, 'https')}://{host}"

    def request(
        self,
        method: str,
        registry: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        content: bytes | Iterable[bytes] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Send one request to ``registry`` (``path`` may also be an absolute URL, e.g. a Location).

        The first request to a registry is preceded by a ping, so that the auth
        challenge is known before any request whose body cannot be sent twice.
        """
        self._ensure_pinged(registry)
        url = path if "://" in path else self.base_url(registry) + path
        request = self.http.build_request(method, url, params=params, headers=headers, content=content)
        try:
            return self.http.send(request, stream=stream)
        except httpx.HTTPError as exc:
            raise wrap_transport_error(exc, f"{method} {url}") from None

    def get_direct(self, registry: str, path: str, headers: dict[str, str] | None = None) -> BodyReader | None:
        """GET on the fast path (:mod:`.direct`): the body of a plain 200/206 answer, else None.

        None also when credentials would need a round trip first; the caller then
        uses :meth:`request`, which does everything the fast path leaves out.
        """
        self._ensure_pinged(registry)
        url = self.base_url(registry) + path
        request = self.http.build_request("GET", url, headers=headers)
        if not self.auth.authorize_known(request):
            return None
        return self.direct.get(url, request.headers)

    def _ensure_pinged(self, registry: str) -> None:
        if registry in self._pinged:
            return
        with self._ping_lock:
            if registry not in self._pinged:
                self.ping(registry)

    def ping(self, registry: str) -> None:
        """``GET /v2/``: checks the registry speaks the API and learns its auth challenge first.

        This is also where the scheme is chosen: HTTPS first; plain HTTP when the
        registry's policy allows it and HTTPS could not be spoken (docker's and
        skopeo's fallback for insecure registries). A loopback registry is first
        probed with a bare TLS handshake, so one that speaks only HTTP costs no
        verifying TLS context.
        """
        host = DOCKER_HUB_API if registry == DOCKER_HUB else registry
        if registry in self._pinned:
            url = f"{self._schemes[registry]}://{host}/v2/"
            try:
                response = self.http.get(url)
            except httpx.HTTPError as exc:
                raise wrap_transport_error(exc, f"GET {url}") from None
            check(response, 200)
            self._pinged.add(registry)
            return
        policy = endpoint_policy(host, self.options)
        first: Exception | str | None = None
        if policy is Fallback.NO_TLS and speaks_tls(host, self.options.timeout) is False:
            first = "the server does not speak TLS"  # the HTTPS attempt below would fail the same way
        else:
            try:
                response = self.http.get(f"https://{host}/v2/")
                self._schemes[registry] = "https"
            except httpx.HTTPError as exc:
                if policy is Fallback.NEVER or not may_fall_back(exc, policy):
                    raise wrap_transport_error(exc, f"GET https://{host}/v2/") from None
                first = wrap_transport_error(exc, "HTTPS")
        if first is not None:
            try:
                response = self.http.get(f"http://{host}/v2/")
            except httpx.HTTPError as plain:
                raise wrap_transport_error(plain, f"GET http://{host}/v2/ (after {first})") from None
            self._schemes[registry] = "http"
        check(response, 200)
        self._pinged.add(registry)

    # -- catalog and tags ------------------------------------------------------------------------

    def _paginate(self, registry: str, path: str, key: str, page_size: int) -> Iterator[str]:
        url: str | None = path
        params: dict[str, str] | None = {"n": str(page_size)}
        while url is not None:
            response = check(self.request("GET", registry, url, params=params), 200, not_found="NAME_UNKNOWN")
            try:
                listing = jsontext.loads(response.content)
                names = listing.get(key) or []
            except (ValueError, AttributeError):
                raise ClientError(f"{registry}{url}: the listing is not a JSON object") from None
            if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
                raise ClientError(f"{registry}{url}: {key} is not a list of names")
            yield from names
            match = _LINK.search(response.headers.get("Link", ""))
            url = match.group(1) if match else None
            if url is not None and "://" not in url and not url.startswith("/"):
                url = "/" + url
            params = None  # the Link URL carries n and last
        return

    def catalog(self, registry: str, *, page_size: int = DEFAULT_PAGE_SIZE) -> Iterator[str]:
        """Every repository name (``GET /v2/_catalog``), following ``Link`` pagination."""
        return self._paginate(registry, "/v2/_catalog", "repositories", page_size)

    def get_repositories(
        self, registry: str, repository_filter: str | None = None, namespace_filter: str | None = None
    ) -> list[str]:
        """Repository names whose full name matches ``repository_filter`` and whose namespace
        (everything before the last ``/``) matches ``namespace_filter`` (regexes, ``re.search``)."""
        repo_re = re.compile(repository_filter) if repository_filter else None
        ns_re = re.compile(namespace_filter) if namespace_filter else None
        found: list[str] = []
        for name in self.catalog(registry):
            namespace = name.rpartition("/")[0]
            if repo_re is not None and not repo_re.search(name):
                continue
            if ns_re is not None and not ns_re.search(namespace):
                continue
            found.append(name)
        return found

    def get_namespaces(self, registry: str, namespace_filter: str | None = None) -> list[str]:
        """The distinct namespaces of the catalog (``""`` for top-level repositories), sorted."""
        ns_re = re.compile(namespace_filter) if namespace_filter else None
        spaces = {name.rpartition("/")[0] for name in self.catalog(registry)}
        return sorted(ns for ns in spaces if ns_re is None or ns_re.search(ns))

    def tags(self, repository: Reference, *, page_size: int = DEFAULT_PAGE_SIZE) -> list[str]:
        """The repository's tags (``GET /v2/NAME/tags/list``), all pages."""
        path = f"/v2/{repository.repository}/tags/list"
        return list(self._paginate(repository.registry, path, "tags", page_size))

    def tags_with_metadata(self, repository: Reference, pattern: str | None = None) -> list[TagInfo]:
        """Each tag (matching ``pattern``) with its digest, media type and size, fetched concurrently."""
        tag_re = re.compile(pattern) if pattern else None
        names = [t for t in self.tags(repository) if tag_re is None or tag_re.search(t)]

        def one(tag: str) -> TagInfo:
            info = self.head_manifest(repository.with_tag(tag))
            return TagInfo(tag, info.digest, info.media_type, info.size)

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(one, names))

    # -- manifests --------------------------------------------------------------------------------

    def _manifest_path(self, ref: Reference, reference: str | None = None) -> str:
        return f"/v2/{ref.repository}/manifests/{reference or ref.reference}"

    def head_manifest(self, ref: Reference) -> ManifestInfo:
        """Resolve a tag or digest to (digest, media type, size), with a GET where HEAD says too little."""
        response = self.request(
            "HEAD", ref.registry, self._manifest_path(ref), headers={"Accept": ACCEPT_MANIFESTS}
        )
        check(response, 200, not_found="MANIFEST_UNKNOWN")
        header = response.headers.get("Docker-Content-Digest")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        length = response.headers.get("Content-Length")
        if (
            header
            and media_type in MANIFEST_MEDIA_TYPES
            and length is not None
            and not is_schema1(media_type)
        ):
            return ManifestInfo(Digest.parse(header), media_type, int(length))
        manifest = self.get_manifest(ref)
        return ManifestInfo(manifest.digest, manifest.media_type, manifest.size)

    def get_manifest(self, ref: Reference, *, accept: str = ACCEPT_MANIFESTS) -> RawManifest:
        """The manifest bytes as stored, verified against the digest asked for (or served)."""
        response = self.request(
            "GET", ref.registry, self._manifest_path(ref), headers={"Accept": accept}, stream=True
        )
        try:
            check(response, 200, not_found="MANIFEST_UNKNOWN")
            raw = b""
            for chunk in response.iter_bytes():
                raw += chunk
                if len(raw) > MANIFEST_LIMIT:
                    raise ManifestTooLarge(f"{ref}: manifest larger than {MANIFEST_LIMIT} bytes")
        except httpx.HTTPError as exc:
            raise wrap_transport_error(exc, f"GET {ref}") from None
        finally:
            response.close()
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        header = response.headers.get("Docker-Content-Digest")
        algorithm = ref.digest.algorithm if ref.digest else "sha256"
        if is_schema1(media_type):
            # a signed schema 1 manifest's digest covers its payload without the signatures
            payload = parse_manifest(raw, media_type or None).payload
            computed = Digest.of(payload, algorithm)
        else:
            computed = Digest.of(raw, algorithm)
        expected = str(ref.digest) if ref.digest is not None else header
        if expected and Digest.parse(expected).algorithm == algorithm and Digest.parse(expected) != computed:
            raise DigestMismatch(f"manifest {ref}", expected, computed)
        return RawManifest(raw, media_type, computed)

    def put_manifest(self, ref: Reference, raw: bytes, media_type: str) -> Digest:
        """Store ``raw`` under the reference's tag (or digest); returns the registry's digest."""
        return self.put_manifest_answered(ref, raw, media_type)[0]

    def put_manifest_answered(self, ref: Reference, raw: bytes, media_type: str) -> tuple[Digest, httpx.Headers]:
        """:meth:`put_manifest`, with the answer's headers (``OCI-Subject``: see :mod:`.referrers`)."""
        response = self.request(
            "PUT", ref.registry, self._manifest_path(ref), content=raw, headers={"Content-Type": media_type}
        )
        check(response, 201, 200, 202)
        header = response.headers.get("Docker-Content-Digest")
        return (Digest.parse(header) if header else Digest.of(raw)), response.headers

    def delete_manifest(self, ref: Reference) -> None:
        """``DELETE /v2/NAME/manifests/DIGEST``: the manifest and every tag pointing at it."""
        if ref.digest is None:
            raise ValueError(f"{ref}: deleting a manifest needs a digest; use delete_tag for a tag")
        response = self.request("DELETE", ref.registry, self._manifest_path(ref, str(ref.digest)))
        check(response, 202, 200, not_found="MANIFEST_UNKNOWN")

    # -- blobs (see blobs.py) --------------------------------------------------------------------

    def blob_size(self, repository: Reference, digest: Digest) -> int | None:
        """The blob's size if the repository has it, else None (``HEAD /v2/NAME/blobs/DIGEST``)."""
        return blobs.stat(self, repository, digest)

    def open_blob(self, repository: Reference, digest: Digest, offset: int = 0) -> httpx.Response:
        """A streaming response for the blob from ``offset``; the caller closes it and verifies."""
        return blobs.open_blob(self, repository, digest, offset)

    def read_blob(self, repository: Reference, digest: Digest, limit: int = MANIFEST_LIMIT) -> bytes:
        """A small blob (a config) in memory, verified."""
        return blobs.read_small(self, repository, digest, limit)

    def upload_blob(
        self,
        repository: Reference,
        digest: Digest,
        size: int,
        chunks: Iterable[bytes],
        *,
        chunk_size: int = blob_uploads.DEFAULT_CHUNK_SIZE,
    ) -> None:
        """Upload a blob from ``chunks``, verifying ``digest`` and ``size`` as the bytes pass."""
        blob_uploads.upload(self, repository, digest, size, chunks, chunk_size=chunk_size)

    def mount_blob(self, repository: Reference, digest: Digest, source: str) -> bool:
        """Cross-repository mount from ``source`` (same registry); False if the registry declined."""
        return blob_uploads.mount(self, repository, digest, source)

    def delete_blob(self, repository: Reference, digest: Digest) -> None:
        """``DELETE /v2/NAME/blobs/DIGEST``."""
        response = self.request("DELETE", repository.registry, f"/v2/{repository.repository}/blobs/{digest}")
        check(response, 202, 200, not_found="BLOB_UNKNOWN")
