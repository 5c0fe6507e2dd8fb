"""The token endpoint (Distribution's ``docs/spec/auth/token.md`` and ``oauth.md``), at ``/auth/token``.

``GET /auth/token?service=S&scope=repository:NAME:pull,push&offline_token=true``
with optional basic credentials, and ``POST /auth/token`` with an OAuth2 form
(``grant_type=password`` with ``username``/``password``, or
``grant_type=refresh_token`` with ``refresh_token``; ``client_id`` required).
Both answer a short-lived JWT granting, for each requested scope, the
intersection of the requested actions and those the caller holds (an empty
intersection is not an error, as the spec says). Anonymous callers get tokens
too: for public repositories. A refresh token is issued for
``offline_token=true`` (GET) or ``access_type=offline`` (password grant); it is
opaque, stored as its SHA-256, and dies, as access tokens do, with the account's
credentials as they were when it logged in (their generation: ``store.py``).

Credentials travel in the ``Authorization`` header or the POST body, never in
the URL, so the access log (path only) cannot record them. Errors carry both
the registry's ``errors`` envelope and OAuth2's ``error`` field.

``GET /auth/jwks`` publishes the public signing key as a JWKS, for services
that verify cargohold's tokens.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Final
from urllib.parse import parse_qs

from ..api.asgi import Request, Response, envelope_response, error_response
from ..errcodes import RegistryError, Unauthorized, Unsupported
from ..reference import is_repository_name
from .access import CATALOG, Access
from .controller import scope_string
from .jwt import encode, new_claims
from .keys import SigningKey, jwks
from .login import Authenticator, audit, parse_basic
from .model import Account
from .passwords import generate_secret, secret_digest
from .policy import load_view
from .store import AccessStore

TOKEN_PATH: Final = "/auth/token"
JWKS_PATH: Final = "/auth/jwks"
#: a token form is a few hundred bytes; anything far larger is not one
MAX_FORM_BYTES: Final = 64 * 1024
#: the spec: never hand out a token with less than 60 seconds to live
MIN_LIFETIME: Final = 60


class TokenRequestInvalid(Unsupported):
    """A token request the endpoint cannot serve (400)."""

    oauth_error: ClassVar[str] = "invalid_request"

    def __init__(self, message: str) -> None:
        super().__init__(message, status=400)


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


_OAUTH_ERRORS: Final = {401: "invalid_grant", 403: "access_denied", 429: "temporarily_unavailable"}


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


def _form(raw: bytes) -> dict[str, list[str]]:
    try:
        return parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise TokenRequestInvalid("the form is not UTF-8") from None


def _first(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


class TokenService:
    """Issues access tokens (and refresh tokens) for the accounts of an :class:`AccessStore`."""

    def __init__(self, settings: TokenSettings, key: SigningKey, store: AccessStore, login: Authenticator) -> None:
        self.settings = settings
        self.key = key
        self.store = store
        self.login = login

    def granted(self, account: Account | None, requested: Iterable[Access]) -> list[Access]:
        """The part of ``requested`` the caller holds (``*`` stands for every action it holds)."""
        view = load_view(self.store, account)
        granted: list[Access] = []
        for access in requested:
            if access == CATALOG:
                if account is not None:
                    granted.append(access)
            elif access.type == "repository" and is_repository_name(access.name):
                held = view.actions(access.name)
                wanted = held if access.action == "*" else {access.action} & held
                granted.extend(Access("repository", access.name, action) for action in sorted(wanted))
        return list(dict.fromkeys(granted))

    def issue(self, account: Account | None, requested: list[Access], client: str) -> dict[str, Any]:
        granted = self.granted(account, requested)
        lifetime = max(self.settings.lifetime, MIN_LIFETIME)
        claims = new_claims(
            issuer=self.settings.issuer, subject=account.name if account else "", audience=self.settings.service,
            lifetime=lifetime, accesses=granted, generation=account.credentials_generation if account else None,
        )
        token = encode(claims, self.key)
        issued = datetime.datetime.fromtimestamp(claims["iat"], datetime.UTC)
        audit("token_issued", account=account.name if account else None, scope=scope_string(granted),
              client=client.rsplit(":", 1)[0])
        return {
            "token": token, "access_token": token, "expires_in": lifetime,
            "issued_at": issued.strftime("%Y-%m-%dT%H:%M:%SZ"), "scope": scope_string(granted),
        }

    def _refresh_token(self, account: Account, client_id: str) -> str:
        secret = generate_secret()
        self.store.add_refresh_token(secret_digest(secret), account, client_id, self.settings.refresh_lifetime)
        return secret

    def _check_service(self, service: str | None) -> None:
        if service is not None and service != self.settings.service:
            raise UnknownService(f"this token service issues tokens for {self.settings.service!r} only")

    def _challenge(self) -> dict[str, str]:
        return {"WWW-Authenticate": f'Basic realm="{self.settings.realm}"'}

    async def __call__(self, request: Request) -> Response:
        try:
            if request.path == JWKS_PATH and request.method in ("GET", "HEAD"):
                return Response.json(jwks([self.key.public]))
            if request.path != TOKEN_PATH:
                return envelope_response([{"code": "NOT_FOUND", "message": "no such endpoint"}], 404)
            if request.method in ("GET", "HEAD"):
                body = await self._get(request)
            elif request.method == "POST":
                body = await self._post(request)
            else:
                raise Unsupported(f"{request.method} is not supported on {TOKEN_PATH}", status=405)
        except RegistryError as error:
            return self.error_response(error)
        response = Response.json(body)
        response.header("cache-control", "no-store").header("pragma", "no-cache")
        return response

    @staticmethod
    def error_response(error: RegistryError) -> Response:
        oauth = getattr(error, "oauth_error", None) or _OAUTH_ERRORS.get(error.status, "invalid_request")
        response = error_response(error, error=oauth, error_description=error.message)
        return response.header("cache-control", "no-store")

    async def _get(self, request: Request) -> dict[str, Any]:
        query = parse_qs(request.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        self._check_service(_first(query, "service"))
        requested = parse_scopes(query.get("scope", []))
        account = None
        header = request.headers.get("authorization")
        if header is not None:
            credentials = parse_basic(header)
            if credentials is None:
                raise Unauthorized("the token endpoint takes basic credentials", headers=self._challenge())
            account = await self.login.login(*credentials, request.client, self._challenge())
        body = self.issue(account, requested, request.client)
        if account is not None and _first(query, "offline_token") == "true":
            body["refresh_token"] = self._refresh_token(account, _first(query, "client_id") or "unknown")
        return body

    async def _post(self, request: Request) -> dict[str, Any]:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise TokenRequestInvalid("the token form must be application/x-www-form-urlencoded")
        raw = await request.body(MAX_FORM_BYTES)
        if raw is None:
            raise TokenRequestInvalid("the token form is too large")
        form = _form(raw)
        self._check_service(_first(form, "service"))
        client_id = _first(form, "client_id")
        if not client_id:
            raise TokenRequestInvalid("client_id is required")
        requested = parse_scopes(form.get("scope", []))
        grant_type = _first(form, "grant_type")
        if grant_type == "password":
            name, password = _first(form, "username"), _first(form, "password")
            if not name or password is None:
                raise TokenRequestInvalid("the password grant needs username and password")
            account = await self.login.login(name, password, request.client)
            body = self.issue(account, requested, request.client)
            if _first(form, "access_type") == "offline":
                body["refresh_token"] = self._refresh_token(account, client_id)
            return body
        if grant_type == "refresh_token":
            refresh = _first(form, "refresh_token") or ""
            found = self.store.refresh_token_account(secret_digest(refresh)) if refresh else None
            if found is None or found.disabled:
                audit("refresh_rejected", client=request.client.rsplit(":", 1)[0],
                      account=found.name if found else None)
                raise InvalidRefreshToken("invalid refresh token")
            body = self.issue(found, requested, request.client)
            body["refresh_token"] = refresh
            return body
        raise UnsupportedGrantType(f"unsupported grant_type {grant_type!r} (password or refresh_token)")
