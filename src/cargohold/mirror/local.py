"""How a mirror job reaches this registry: over HTTP, at its own listening address, with a token it mints.

The job's writes then take the path every push takes (authorization, read-only mode, immutable tags,
quotas, the events and webhooks a push makes) in whichever worker answers, and the client's copy moves
them as it moves any image: streamed, mounted, retried. The token is one of cargohold's own, signed with
its token key, for the job's repository only (pull and push, delete when it prunes) and short-lived;
under ``auth: none`` no credential is needed. Under ``auth: htpasswd`` the server has no way to vouch for
itself, so a job with this registry as one end fails with an error saying so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Final

import httpx

from ..auth.access import Access
from ..auth.jwt import encode, new_claims
from ..auth.keys import SigningKey
from ..client.auth import RegistryAuth
from ..config import ServerConfig

#: seconds a minted token lives; a new one is minted well before it ends
TOKEN_SECONDS: Final = 600
_RENEW_BEFORE: Final = 120


class LocalUnreachable(Exception):
    """This registry cannot be written by a job (``auth: htpasswd``)."""


Minter = Callable[[list[Access]], str]


@dataclass(frozen=True)
class LocalRegistry:
    """This registry as a job's client sees it."""

    #: ``host:port`` of the listening socket, on loopback when it listens on every address
    address: str
    #: it speaks TLS: its certificate names its public host, not the loopback address, so it is not checked
    tls: bool
    #: a token for the given accesses (None: no auth; raises LocalUnreachable when impossible)
    mint: Minter | None

    @classmethod
    def of(cls, config: ServerConfig, key: SigningKey | None) -> LocalRegistry:
        host, port = config.server.host, config.server.port
        if host in ("0.0.0.0", "", "*"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        mint: Minter | None = None
        if config.auth.mode == "htpasswd":
            def refuse(accesses: list[Access]) -> str:
                raise LocalUnreachable("auth htpasswd: the server cannot vouch for itself; mirror jobs with this"
                                       " registry as one end need auth none or token")
            mint = refuse
        elif config.auth.mode == "token" and key is not None:
            signing_key = key

            def minted(accesses: list[Access]) -> str:
                claims = new_claims(issuer=config.auth.issuer, subject="", audience=config.auth.service,
                                    lifetime=TOKEN_SECONDS, accesses=accesses)
                return encode(claims, signing_key)
            mint = minted
        return cls(address, config.server.tls.cert is not None, mint)


class SelfAuth(RegistryAuth):
    """The client's authentication, with this registry's requests carrying a minted token."""

    def __init__(self, inner: RegistryAuth, local: str, mint: Callable[[], str]) -> None:
        super().__init__()
        self._inner = inner
        self._local = local
        self._mint = mint
        self._minted: tuple[str, float] | None = None
        self._minted_lock = threading.Lock()

    def _bearer(self) -> str:
        with self._minted_lock:
            if self._minted is None or self._minted[1] < time.monotonic():
                self._minted = (self._mint(), time.monotonic() + TOKEN_SECONDS - _RENEW_BEFORE)
            return self._minted[0]

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if request.url.netloc.decode("ascii") != self._local:
            yield from self._inner.sync_auth_flow(request)
            return
        request.headers["Authorization"] = f"Bearer {self._bearer()}"
        yield request

    def authorize_known(self, request: httpx.Request) -> bool:
        if request.url.netloc.decode("ascii") != self._local:
            return self._inner.authorize_known(request)
        request.headers["Authorization"] = f"Bearer {self._bearer()}"
        return True
