"""Access controllers for the registry API: htpasswd basic auth, and bearer tokens.

:class:`TokenAccessController` follows Distribution's token protocol. A caller
without a token gets what anonymous callers may do (pull public repositories,
list them); for anything more it gets 401 with
``WWW-Authenticate: Bearer realm=...,service=...,scope=...``, the scope naming
what the request needs. A token grants exactly the actions in its ``access``
claim. When those fall short:

- anonymous tokens, and tokens of an external issuer, get 401 with
  ``error="insufficient_scope"`` (a client may fetch a stronger token);
- tokens of cargohold's own service get the same 401 if the account does hold
  the rights (the client asked for too little), and 403 DENIED if it does not,
  whether or not the repository exists.

Tokens of the own service are void once their account is deleted or disabled,
or its password or robot token changed after the token was issued
(:func:`~cargohold.auth.login.token_account`), at the base endpoint too.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Final

from ..access_model import Account
from ..errcodes import Denied, Unauthorized
from ..events.log import EventLog
from ..metadata.access import AccessStore
from .access import CATALOG, Access, Credentials, Grant, ReadOnly, everything, read_only_refusals, writable
from .htpasswd import HtpasswdFile
from .jwt import TokenInvalid, VerifiedToken, Verifier
from .login import audit, parse_basic, record_login, token_account
from .policy import load_view
from .ratelimit import LoginLimiter

log: Final = logging.getLogger("cargohold.auth")

#: how long verified htpasswd credentials are remembered, sparing a bcrypt check per request
BASIC_CACHE_SECONDS: Final = 60.0


def scope_string(accesses: Iterable[Access]) -> str:
    """``repository:a:pull,push registry:catalog:*``: one entry per resource, as the token spec writes scopes."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for access in accesses:
        actions = grouped.setdefault((access.type, access.name), [])
        if access.action not in actions:
            actions.append(access.action)
    return " ".join(f"{kind}:{name}:{','.join(actions)}" for (kind, name), actions in grouped.items())


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def bearer_challenge(realm: str, service: str, required: Iterable[Access], error: str | None = None) -> str:
    parts = [f'realm="{_quote(realm)}"', f'service="{_quote(service)}"']
    scope = scope_string(required)
    if scope:
        parts.append(f'scope="{_quote(scope)}"')
    if error:
        parts.append(f'error="{error}"')
    return "Bearer " + ",".join(parts)


def realm_for(credentials: Credentials, configured: str) -> str:
    """The token endpoint's URL: configured, or this server's own ``/auth/token`` as the client reached it."""
    return configured or f"{credentials.origin}/auth/token"


class InvalidToken(Unauthorized):
    """The bearer token is malformed, badly signed, expired, for another service, or its account is void."""


class InsufficientScope(Unauthorized):
    """The token (or its absence) does not grant what the request needs."""


class TokenAccessController:
    """Bearer tokens from cargohold's token service (``own_issuer``) and from trusted external issuers."""

    def __init__(
        self, verifier: Verifier, store: AccessStore, own_issuer: str, service: str, realm: str = "",
        read_only: ReadOnly = writable,
    ) -> None:
        self.verifier = verifier
        #: repositories where only pull is ever granted, whatever a token says (pull-through caches)
        self.read_only = read_only
        self.store = store
        self.own_issuer = own_issuer
        self.service = service
        self.realm = realm

    def _challenge(self, credentials: Credentials, required: list[Access], error: str | None = None) -> dict[str, str]:
        realm = realm_for(credentials, self.realm)
        return {"WWW-Authenticate": bearer_challenge(realm, self.service, required, error)}

    def _token(self, credentials: Credentials, required: list[Access]) -> VerifiedToken | None:
        header = credentials.headers.get("authorization")
        if header is None:
            return None
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise InvalidToken("bearer token required", headers=self._challenge(credentials, required))
        try:
            return self.verifier.verify(value.strip())
        except TokenInvalid as exc:
            audit("token_rejected", reason=type(exc).__name__, detail=str(exc), client=credentials.client)
            raise InvalidToken(
                "invalid bearer token", headers=self._challenge(credentials, required, "invalid_token")
            ) from None

    async def _subject(self, credentials: Credentials, token: VerifiedToken, required: list[Access]) -> Account | None:
        """The live account behind an own-service token (None: anonymous or external)."""
        if token.issuer != self.own_issuer or not token.subject:
            return None
        account = await token_account(self.store, token)
        if account is None:
            audit("token_rejected", reason="account void", account=token.subject, client=credentials.client)
            challenge = self._challenge(credentials, required, "invalid_token")
            raise InvalidToken("invalid bearer token", headers=challenge)
        return account

    async def authorize(self, credentials: Credentials, required: list[Access]) -> Grant:
        token = self._token(credentials, required)
        if not required:  # the base endpoint: any valid token will do, no token gets the challenge
            if token is None:
                raise Unauthorized("authentication required", headers=self._challenge(credentials, required))
            await self._subject(credentials, token, required)
            return Grant(subject=token.subject or None, issuer=token.issuer)
        account = await self._subject(credentials, token, required) if token is not None else None
        local = token is None or token.issuer == self.own_issuer
        if token is None:
            view = await load_view(self.store, None, self.read_only)
            granted = frozenset([access for access in required if await view.allows(access)])
        else:
            granted = token.accesses
            if local:  # the catalog lists what the caller may see, so every caller may ask for it
                granted |= {CATALOG}
            refused = read_only_refusals(list(granted), self.read_only)
            if refused:  # an external token, or one issued before the repository became read-only
                granted -= set(refused)
        grant = Grant(subject=(token.subject or None) if token else None, accesses=granted,
                      issuer=token.issuer if token else None)
        missing = [access for access in required if not grant.allows(access)]
        if not missing:
            return grant
        if account is None:
            error = "insufficient_scope" if token is not None else None
            raise InsufficientScope(headers=self._challenge(credentials, required, error))
        view = await load_view(self.store, account, self.read_only)
        if all([await view.allows(access) for access in missing]):
            raise InsufficientScope(headers=self._challenge(credentials, required, "insufficient_scope"))
        raise Denied()

    async def catalog_filter(self, grant: Grant) -> Callable[[str], bool]:
        external = grant.issuer is not None and grant.issuer != self.own_issuer
        if external and CATALOG in grant.accesses:
            return everything
        return await self.pull_filter(grant)

    async def pull_filter(self, grant: Grant) -> Callable[[str], bool]:
        if grant.everything:
            return everything
        if grant.issuer is not None and grant.issuer != self.own_issuer:
            return grant.can_pull  # an external token is all we know of its holder
        account = await self.store.account(grant.subject) if grant.subject else None
        return await (await load_view(self.store, account, self.read_only)).pull_filter()


class BasicAccessController:
    """Distribution's htpasswd mode: any user of the file may do anything; everyone else gets 401."""

    def __init__(self, htpasswd: HtpasswdFile, limiter: LoginLimiter, realm: str = "cargohold",
                 clock: Callable[[], float] = time.monotonic, events: EventLog | None = None,
                 read_only: ReadOnly = writable) -> None:
        self.htpasswd = htpasswd
        #: repositories no user may push to or delete from (pull-through caches): DENIED
        self.read_only = read_only
        self.limiter = limiter
        #: logins are recorded when the password is checked: refusals, and successes once per cache period
        self.events = events
        self.realm = realm
        self._clock = clock
        self._salt = secrets.token_bytes(16)
        #: digest of verified credentials -> (until when, htpasswd version)
        self._verified: dict[str, tuple[float, int | None]] = {}

    def _challenge(self) -> dict[str, str]:
        return {"WWW-Authenticate": f'Basic realm="{_quote(self.realm)}"'}

    def _cache_key(self, name: str, secret: str) -> str:
        return hashlib.sha256(self._salt + json.dumps([name, secret]).encode()).hexdigest()

    async def authorize(self, credentials: Credentials, required: list[Access]) -> Grant:
        header = credentials.headers.get("authorization")
        basic = parse_basic(header) if header is not None else None
        if basic is None:
            raise Unauthorized("authentication required", headers=self._challenge())
        name, secret = basic
        key, now, version = self._cache_key(name, secret), self._clock(), self.htpasswd.version()
        until, verified_version = self._verified.get(key, (0.0, None))
        if until > now and verified_version == version:
            return self._grant(name, required)
        address = credentials.client.rsplit(":", 1)[0]
        await self.limiter.check(name, address)
        if not await asyncio.to_thread(self.htpasswd.verify, name, secret):
            await self.limiter.failed(name, address)
            audit("login_failed", account=name, client=address, reason="htpasswd")
            await record_login(self.events, name, False, "htpasswd")
            raise Unauthorized("invalid username or password", headers=self._challenge())
        await record_login(self.events, name, True)
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[key] = (now + BASIC_CACHE_SECONDS, version)
        return self._grant(name, required)

    def _grant(self, name: str, required: list[Access]) -> Grant:
        if read_only_refusals(required, self.read_only):
            raise Denied("the repository is a read-only pull-through cache")
        return Grant(subject=name, everything=True)

    async def catalog_filter(self, grant: Grant) -> Callable[[str], bool]:
        return everything

    async def pull_filter(self, grant: Grant) -> Callable[[str], bool]:
        return everything
