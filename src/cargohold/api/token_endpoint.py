"""The token endpoint over :class:`~cargohold.auth.tokens.TokenService`, at ``/auth/token`` and ``/auth/jwks``.

``GET /auth/token?service=S&scope=repository:NAME:pull,push&offline_token=true``
with optional basic credentials, and ``POST /auth/token`` with an OAuth2 form
(``grant_type=password`` with ``username``/``password``, or
``grant_type=refresh_token`` with ``refresh_token``; ``client_id`` required).
Both answer a short-lived JWT; a refresh token comes with it for
``offline_token=true`` (GET) or ``access_type=offline`` (password grant).

Credentials travel in the ``Authorization`` header or the POST body, never in
the URL, so the access log (path only) cannot record them. Errors carry both
the registry's ``errors`` envelope and OAuth2's ``error`` field.

``GET /auth/jwks`` publishes the public signing key as a JWKS, for services
that verify cargohold's tokens.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import parse_qs

from ..auth.login import parse_basic
from ..auth.tokens import (
    TokenRequestInvalid,
    TokenService,
    UnsupportedGrantType,
    parse_scopes,
)
from ..errcodes import RegistryError, Unauthorized
from ..http import Request, Response, error_response, route
from ..metrics import recorder as metrics
from .routes import Endpoint, Route

TOKEN_PATH: Final = "/auth/token"
JWKS_PATH: Final = "/auth/jwks"
#: a token form is a few hundred bytes; anything far larger is not one
MAX_FORM_BYTES: Final = 64 * 1024
_OAUTH_ERRORS: Final = {401: "invalid_grant", 403: "access_denied", 429: "temporarily_unavailable"}


def token_error_response(error: RegistryError) -> Response:
    """The envelope with OAuth2's ``error`` and ``error_description`` beside it."""
    metrics.token("refused")
    oauth = getattr(error, "oauth_error", None) or _OAUTH_ERRORS.get(error.status, "invalid_request")
    response = error_response(error, error=oauth, error_description=error.message)
    return response.header("cache-control", "no-store")


def _form(raw: bytes) -> dict[str, list[str]]:
    try:
        return parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise TokenRequestInvalid("the form is not UTF-8") from None


def _first(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def _token_response(body: dict[str, Any]) -> Response:
    return Response.json(body).header("cache-control", "no-store").header("pragma", "no-cache")


class TokenEndpoint:
    def __init__(self, service: TokenService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        token: dict[str, Endpoint] = {"GET": self.get, "HEAD": self.get, "POST": self.post}
        return [
            route("token", TOKEN_PATH, token, marker=TOKEN_PATH, guarded=False, on_error=token_error_response),
            route("jwks", JWKS_PATH, {"GET": self.jwks, "HEAD": self.jwks}, marker=JWKS_PATH, guarded=False,
                  on_error=token_error_response),
        ]

    async def jwks(self, request: Request) -> Response:
        return Response.json(self.service.jwks())

    async def get(self, request: Request) -> Response:
        service = self.service
        query = parse_qs(request.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        service.check_service(_first(query, "service"))
        requested = parse_scopes(query.get("scope", []))
        account = None
        header = request.headers.get("authorization")
        if header is not None:
            credentials = parse_basic(header)
            if credentials is None:
                raise Unauthorized("the token endpoint takes basic credentials", headers=service.challenge())
            account = await service.login.login(*credentials, request.client, service.challenge())
        body = await service.issue(account, requested, request.client)
        if account is not None and _first(query, "offline_token") == "true":
            body["refresh_token"] = await service.refresh_token(account, _first(query, "client_id") or "unknown")
        return _token_response(body)

    async def post(self, request: Request) -> Response:
        service = self.service
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise TokenRequestInvalid("the token form must be application/x-www-form-urlencoded")
        raw = await request.body(MAX_FORM_BYTES)
        if raw is None:
            raise TokenRequestInvalid("the token form is too large")
        form = _form(raw)
        service.check_service(_first(form, "service"))
        client_id = _first(form, "client_id")
        if not client_id:
            raise TokenRequestInvalid("client_id is required")
        requested = parse_scopes(form.get("scope", []))
        grant_type = _first(form, "grant_type")
        if grant_type == "password":
            name, password = _first(form, "username"), _first(form, "password")
            if not name or password is None:
                raise TokenRequestInvalid("the password grant needs username and password")
            account = await service.login.login(name, password, request.client)
            body = await service.issue(account, requested, request.client)
            if _first(form, "access_type") == "offline":
                body["refresh_token"] = await service.refresh_token(account, client_id)
            return _token_response(body)
        if grant_type == "refresh_token":
            refresh = _first(form, "refresh_token") or ""
            account = await service.refreshed_account(refresh, request.client)
            body = await service.issue(account, requested, request.client)
            body["refresh_token"] = refresh
            return _token_response(body)
        raise UnsupportedGrantType(f"unsupported grant_type {grant_type!r} (password or refresh_token)")
