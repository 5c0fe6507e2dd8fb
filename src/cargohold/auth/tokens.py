"""The token service (Distribution's ``docs/spec/auth/token.md`` and ``oauth.md``); its HTTP
endpoint is :mod:`cargohold.api.token_endpoint`.

A token is a short-lived JWT granting, for each requested scope, the
intersection of the requested actions and those the caller holds (an empty
intersection is not an error, as the spec says). Anonymous callers get tokens
too: for public repositories. A refresh token is opaque, stored as its SHA-256,
and dies, as access tokens do, with the account's credentials as they were
when it logged in (their generation: :mod:`cargohold.metadata.access`).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from ..access_model import Account
from ..errcodes import RequestUnsupported, Unauthorized
from ..events import Action, Event
from ..events.log import EventLog
from ..metadata.access import AccessStore
from ..metrics import recorder as metrics
from ..reference import is_repository_name
from .access import CATALOG, Access, ReadOnly, writable
from .controller import scope_string
from .jwt import encode, new_claims
from .keys import SigningKey, jwks
from .login import Authenticator, account_kind, audit
from .passwords import generate_secret, secret_digest
from .policy import load_view

#: the spec: never hand out a token with less than 60 seconds to live
MIN_LIFETIME: Final = 60


class TokenRequestInvalid(RequestUnsupported):
    """A token request the endpoint cannot serve (400)."""

    oauth_error: ClassVar[str] = "invalid_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class UnknownService(TokenRequestInvalid):
    """``service`` names another service: this endpoint only issues tokens for its own."""


class MalformedScope(TokenRequestInvalid):
    """A scope is not ``type:name:actions``."""

    oauth_error = "invalid_scope"


class UnsupportedGrantType(TokenRequestInvalid):
    """``grant_type`` is neither ``password`` nor ``refresh_token``."""

    oauth_error = "unsupported_grant_type"


class InvalidRefreshToken(Unauthorized):
    """The refresh token is unknown, expired, or its account is disabled or gone."""


@dataclass(frozen=True, slots=True)
class TokenSettings:
    issuer: str
    service: str
    #: seconds an access token lives
    lifetime: int = 300
    #: seconds a refresh token lives
    refresh_lifetime: int = 30 * 24 * 3600
    #: the realm of the Basic challenge on failed logins
    realm: str = "cargohold"


def parse_scopes(values: Iterable[str]) -> list[Access]:
    """``repository:a/b:pull,push`` (several per value, space-separated) as one Access per action."""
    found: list[Access] = []
    for value in values:
        for item in value.split():
            kind, sep, rest = item.partition(":")
            name, sep2, actions = rest.rpartition(":")
            if not sep or not sep2 or not kind or not name or not actions:
                raise MalformedScope(f"malformed scope {item!r}")
            kind = kind.split("(", 1)[0]  # "repository(plugin)": the class does not change the rules
            found.extend(Access(kind, name, action) for action in actions.split(",") if action)
    return found


class TokenService:
    """Issues access tokens (and refresh tokens) for the accounts of an :class:`AccessStore`."""

    def __init__(
        self, settings: TokenSettings, key: SigningKey, store: AccessStore, login: Authenticator,
        events: EventLog | None = None, read_only: ReadOnly = writable,
    ) -> None:
        self.settings = settings
        self.key = key
        self.store = store
        self.login = login
        #: where the tokens issued to accounts are recorded (the audit log)
        self.events = events
        #: repositories where only pull is ever granted (pull-through caches)
        self.read_only = read_only

    async def granted(self, account: Account | None, requested: Iterable[Access]) -> list[Access]:
        """The part of ``requested`` the caller holds (``*`` stands for every action it holds)."""
        view = await load_view(self.store, account, self.read_only)
        granted: list[Access] = []
        for access in requested:
            if access == CATALOG:
                if account is not None:
                    granted.append(access)
            elif access.type == "repository" and is_repository_name(access.name):
                held = await view.actions(access.name)
                wanted = held if access.action == "*" else {access.action} & held
                granted.extend(Access("repository", access.name, action) for action in sorted(wanted))
        return list(dict.fromkeys(granted))

    async def issue(self, account: Account | None, requested: list[Access], client: str) -> dict[str, Any]:
        """A token for what ``account`` holds of ``requested``; one given to an account is recorded
        (anonymous ones, handed out for every anonymous pull, are not: they name no one)."""
        granted = await self.granted(account, requested)
        lifetime = max(self.settings.lifetime, MIN_LIFETIME)
        claims = new_claims(
            issuer=self.settings.issuer, subject=account.name if account else "", audience=self.settings.service,
            lifetime=lifetime, accesses=granted, generation=account.credentials_generation if account else None,
        )
        token = encode(claims, self.key)
        metrics.token("issued")
        issued = datetime.datetime.fromtimestamp(claims["iat"], datetime.UTC)
        audit("token_issued", account=account.name if account else None, scope=scope_string(granted),
              client=client.rsplit(":", 1)[0])
        if account is not None and self.events is not None:
            await self.events.add_event(Event.now(
                Action.TOKEN_ISSUE, actor=account.name, actor_kind=account_kind(account.name),
                detail={"scopes": scope_string(granted).split(), "lifetime": lifetime},
            ))
        return {
            "token": token, "access_token": token, "expires_in": lifetime,
            "issued_at": issued.strftime("%Y-%m-%dT%H:%M:%SZ"), "scope": scope_string(granted),
        }

    async def refresh_token(self, account: Account, client_id: str) -> str:
        """A new refresh token for ``account``."""
        secret = generate_secret()
        await self.store.add_refresh_token(secret_digest(secret), account, client_id, self.settings.refresh_lifetime)
        return secret

    async def refreshed_account(self, refresh: str, client: str) -> Account:
        """The account a refresh token stands for, or InvalidRefreshToken."""
        found = await self.store.refresh_token_account(secret_digest(refresh)) if refresh else None
        if found is None or found.disabled:
            audit("refresh_rejected", client=client.rsplit(":", 1)[0], account=found.name if found else None)
            raise InvalidRefreshToken("invalid refresh token")
        return found

    def check_service(self, service: str | None) -> None:
        if service is not None and service != self.settings.service:
            raise UnknownService(f"this token service issues tokens for {self.settings.service!r} only")

    def challenge(self) -> dict[str, str]:
        """The Basic challenge of a failed login here."""
        return {"WWW-Authenticate": f'Basic realm="{self.settings.realm}"'}

    def jwks(self) -> dict[str, Any]:
        """The public signing key, for services that verify these tokens."""
        return jwks([self.key.public])
