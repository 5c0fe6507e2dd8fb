"""Registry authentication as an :class:`httpx.Auth` flow: 401 -> challenge -> token -> retry.

The flow (httpx's generator protocol: yield a request, receive its response)::

    request ──► registry ──401 WWW-Authenticate: Bearer realm,service,scope──┐
       ▲                                                                      │
       └── retry with "Bearer TOKEN" ◄── GET realm?service&scope (basic creds)┘
                                         or POST realm grant_type=refresh_token

Challenges are remembered per registry host, so later requests carry the right
credentials from the start; this matters for uploads, whose streamed bodies
cannot be sent twice. Tokens are cached per (realm, service, scopes) until they
expire, in memory and optionally in a JSON file. The scopes of a request come
from its URL and method (``repository:NAME:pull,push``), merged with the
challenge's and, for a cross-repository mount, with ``repository:FROM:pull``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx

from .. import jsontext
from .errors import AuthError, check
from .keychain import Credentials, Keychain

#: seconds a token lives when the service does not say (the token spec's default)
DEFAULT_TOKEN_LIFETIME: Final = 60
#: renew this many seconds before expiry so a token does not lapse mid-request
EXPIRY_MARGIN: Final = 10
#: OAuth2 client id sent with refresh-token requests (the token spec requires one)
CLIENT_ID: Final = "cargohold"

_PATH: Final = re.compile(r"^/v2/(?P<name>.+?)/(?:manifests|blobs|tags|referrers)/")
_PARAM: Final = re.compile(r'\s*([a-zA-Z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')


@dataclass(frozen=True, slots=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header."""

    scheme: str  # "bearer" or "basic", lower-case
    params: dict[str, str]

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(self.params.get("scope", "").split())


def parse_challenge(header: str) -> Challenge | None:
    """Parse ``Bearer realm="...",service="...",scope="..."`` (or ``Basic realm=...``)."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3) or "").replace('\\"', '"')
        for m in _PARAM.finditer(rest)
    }
    return Challenge(scheme.lower(), params)


def scopes_for(request: httpx.Request) -> frozenset[str]:
    """The token scopes a request needs, from its path and method (as Distribution grants them)."""
    path = request.url.path
    if path.startswith("/v2/_catalog"):
        return frozenset({"registry:catalog:*"})
    match = _PATH.match(path)
    if match is None:
        return frozenset()
    name = match.group("name")
    method = request.method
    if method in ("GET", "HEAD"):
        actions = "pull"
    elif method == "DELETE":
        actions = "delete"
    else:
        actions = "pull,push"
    scopes = {f"repository:{name}:{actions}"}
    source = request.url.params.get("from")
    if source and request.url.params.get("mount"):
        scopes.add(f"repository:{source}:pull")
    return frozenset(scopes)


def merge_scopes(scopes: frozenset[str]) -> frozenset[str]:
    """Merge ``repository:x:pull`` and ``repository:x:push`` into ``repository:x:pull,push``."""
    merged: dict[str, set[str]] = {}
    for scope in scopes:
        resource, _, actions = scope.rpartition(":")
        merged.setdefault(resource, set()).update(a for a in actions.split(",") if a)
    return frozenset(f"{resource}:{','.join(sorted(actions))}" for resource, actions in merged.items())


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    expires_at: float

    @property
    def fresh(self) -> bool:
        return time.time() < self.expires_at - EXPIRY_MARGIN


class TokenCache:
    """Bearer tokens by (realm, service, scopes); persisted to ``path`` when one is given."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._tokens: dict[str, Token] = {}
        self._lock = threading.Lock()
        if path is not None and path.exists():
            try:
                stored = json.loads(path.read_text())
                self._tokens = {k: Token(v["token"], float(v["expires_at"])) for k, v in stored.items()}
            except (ValueError, KeyError, TypeError, AttributeError):
                self._tokens = {}

    @staticmethod
    def key(realm: str, service: str | None, scopes: frozenset[str]) -> str:
        return f"{realm}|{service or ''}|{' '.join(sorted(scopes))}"

    def get(self, key: str) -> Token | None:
        with self._lock:
            token = self._tokens.get(key)
        return token if token is not None and token.fresh else None

    def put(self, key: str, token: Token) -> None:
        with self._lock:
            self._tokens[key] = token
            if self._path is None:
                return
            live = {
                k: {"token": t.value, "expires_at": t.expires_at} for k, t in self._tokens.items() if t.fresh
            }
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(live, out)
            os.replace(tmp, self._path)


def _origin(url: httpx.URL) -> tuple[str, bytes]:
    return url.scheme, url.netloc


def _basic(credentials: Credentials) -> str:
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


class RegistryAuth(httpx.Auth):
    """Anonymous, basic or bearer-token authentication, chosen by each registry's challenge."""

    def __init__(self, keychain: Keychain | None = None, tokens: TokenCache | None = None) -> None:
        self._keychain = keychain
        self._tokens = tokens or TokenCache()
        self._challenges: dict[str, Challenge] = {}
        self._refresh: dict[str, str] = {}  # registry host -> refresh token from the token service
        self._token_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def credentials(self, registry: str) -> Credentials | None:
        return self._keychain.resolve(registry) if self._keychain is not None else None

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        host = request.url.netloc.decode("ascii")
        with self._lock:
            challenge = self._challenges.get(host)
        if challenge is not None:
            yield from self._authorize(request, host, challenge, fresh=False)
        response = yield request
        if response.status_code != 401 or "WWW-Authenticate" not in response.headers:
            return
        if _origin(response.request.url) != _origin(request.url):
            return  # a redirect target's challenge (storage's): it must not choose where our credentials go
        parsed = parse_challenge(response.headers["WWW-Authenticate"])
        if parsed is None or parsed.scheme not in ("bearer", "basic"):
            return
        if not isinstance(request.stream, httpx.ByteStream):
            return  # a streamed body cannot be sent again; the caller sees the 401
        with self._lock:
            self._challenges[host] = parsed
        if parsed.scheme == "basic" and self.credentials(host) is None:
            return
        if "Authorization" in request.headers and parsed.scheme == "basic":
            return  # these credentials were already refused
        yield from self._authorize(request, host, parsed, fresh=True)
        yield request

    def authorize_known(self, request: httpx.Request) -> bool:
        """Give ``request`` the credentials it would be sent with, if that needs no round trip.

        True when the request is ready (anonymous so far, basic credentials, or a
        cached token); False when a token would have to be fetched first.
        """
        host = request.url.netloc.decode("ascii")
        with self._lock:
            challenge = self._challenges.get(host)
        if challenge is None:
            return True
        flow = self._authorize(request, host, challenge, fresh=False)
        try:
            next(flow)  # a token request: leave it to the full flow
        except StopIteration:
            return True
        flow.close()
        return False

    def _authorize(
        self, request: httpx.Request, host: str, challenge: Challenge, *, fresh: bool
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """Set the Authorization header for ``challenge``, fetching a token if needed."""
        credentials = self.credentials(host)
        if challenge.scheme == "basic":
            if credentials is not None and credentials.username:
                request.headers["Authorization"] = _basic(credentials)
            return
        scopes = merge_scopes(scopes_for(request) | (challenge.scopes if fresh else frozenset()))
        key = TokenCache.key(challenge.realm, challenge.service, scopes)
        token = None if fresh else self._tokens.get(key)
        if token is None:
            refused = request.headers.get("Authorization") if fresh else None
            # one token request per key at a time: threads that need the same token wait for the first
            # one's (each flow is driven by one thread to its end, so the lock is held across its yields)
            with self._token_lock(key):
                token = self._tokens.get(key)
                if token is None or f"Bearer {token.value}" == refused:
                    token = yield from self._fetch_token(host, challenge, scopes, credentials)
                    self._tokens.put(key, token)
        request.headers["Authorization"] = f"Bearer {token.value}"

    def _token_lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._token_locks.setdefault(key, threading.Lock())

    def _fetch_token(
        self, host: str, challenge: Challenge, scopes: frozenset[str], credentials: Credentials | None
    ) -> Generator[httpx.Request, httpx.Response, Token]:
        if not challenge.realm:
            raise AuthError(f"{host}: bearer challenge without a realm")
        with self._lock:
            refresh = self._refresh.get(host)
        if credentials is not None and credentials.identity_token:
            refresh = credentials.identity_token
        if refresh:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": refresh,
                "client_id": CLIENT_ID,
                "scope": " ".join(sorted(scopes)),
            }
            if challenge.service:
                form["service"] = challenge.service
            token_request = httpx.Request("POST", challenge.realm, data=form)
        else:
            params: list[tuple[str, str | int | float | bool | None]] = []
            if challenge.service:
                params.append(("service", challenge.service))
            params.extend(("scope", s) for s in sorted(scopes))
            if credentials is not None and credentials.username:
                params.extend(
                    [("account", credentials.username), ("offline_token", "true"), ("client_id", CLIENT_ID)]
                )
            token_request = httpx.Request("GET", challenge.realm, params=params)
            if credentials is not None and credentials.username:
                token_request.headers["Authorization"] = _basic(credentials)
        response = yield token_request
        response.read()
        check(response, 200)
        try:
            body = jsontext.loads(response.content)
            value = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            raise AuthError(f"{challenge.realm}: token service answered with no JSON") from None
        if not isinstance(value, str) or not value:
            raise AuthError(f"{challenge.realm}: token service answered without a token")
        if isinstance(body.get("refresh_token"), str):
            with self._lock:
                self._refresh[host] = body["refresh_token"]
        lifetime = body.get("expires_in")
        lifetime = lifetime if isinstance(lifetime, int) and lifetime > 0 else DEFAULT_TOKEN_LIFETIME
        return Token(value, time.time() + lifetime)
