"""JSON Web Tokens as Distribution's token spec uses them (``docs/spec/auth/jwt.md``).

Compact JWS only: ``base64url(header).base64url(claims).base64url(signature)``,
signed with ES256 or RS256 and naming its key by ``kid``. Verification is
strict and ordered so that nothing from the payload is trusted before the
signature is: the header's ``alg`` must be on the allow-list (never ``none``,
never HMAC) *and* fit the key found by ``kid`` under the claimed issuer; then
the signature; then ``iss``, ``aud``, ``exp`` and ``nbf`` (with a small leeway
for clock skew). The ``access`` claim becomes a set of :class:`Access`.

Tokens of cargohold's own service also carry the private claim
:data:`GENERATION_CLAIM`: the credential generation of their account when it
logged in (see ``store.py``), so that a token can be voided by a change made
within the same second as its ``iat``, which RFC 7519 keeps in whole seconds.

Exception tree (all :class:`TokenInvalid`, answered 401 ``invalid_token``)::

    TokenInvalid
    ├── MalformedToken        not three base64url JSON parts, or claims of the wrong type
    ├── AlgorithmRefused      alg not allowed, or not the key's algorithm
    ├── UnknownIssuer         iss names no trusted issuer
    ├── UnknownKey            kid names no key of that issuer
    ├── BadSignature          the signature does not verify (wrong key, tampered token)
    ├── WrongAudience         aud does not name this service
    ├── TokenExpired          exp is past (beyond the leeway)
    └── TokenNotYetValid      nbf is ahead (beyond the leeway)
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .. import jsontext
from .access import Access
from .keys import ALLOWED_ALGORITHMS, SigningKey, VerifyingKey

#: seconds of clock skew forgiven on exp and nbf (Distribution allows 60)
LEEWAY_SECONDS: Final = 30
#: longest accepted token; a bound on work before the signature check
MAX_TOKEN_LENGTH: Final = 16 * 1024
#: private claim: the account's credential generation the token was issued under
GENERATION_CLAIM: Final = "cargohold_gen"


class TokenInvalid(Exception):
    """A bearer token cannot be trusted; the message says why (for logs, not for the caller)."""


class MalformedToken(TokenInvalid):
    pass


class AlgorithmRefused(TokenInvalid):
    pass


class UnknownIssuer(TokenInvalid):
    pass


class UnknownKey(TokenInvalid):
    pass


class BadSignature(TokenInvalid):
    pass


class WrongAudience(TokenInvalid):
    pass


class TokenExpired(TokenInvalid):
    pass


class TokenNotYetValid(TokenInvalid):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if "=" in text or "+" in text or "/" in text:
        raise MalformedToken("not base64url without padding")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise MalformedToken("not base64url") from None


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = jsontext.loads(raw)
    except ValueError:  # UnicodeDecodeError and JSONTooDeep too
        raise MalformedToken(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise MalformedToken(f"{what} is not a JSON object")
    return value


def access_claim(accesses: Iterable[Access]) -> list[dict[str, Any]]:
    """The ``access`` claim: one entry per resource, its actions sorted."""
    grouped: dict[tuple[str, str], set[str]] = {}
    for access in accesses:
        grouped.setdefault((access.type, access.name), set()).add(access.action)
    return [
        {"type": kind, "name": name, "actions": sorted(actions)} for (kind, name), actions in sorted(grouped.items())
    ]


def encode(claims: Mapping[str, Any], key: SigningKey) -> str:
    header = {"typ": "JWT", "alg": key.algorithm, "kid": key.kid}
    signing_input = (
        _b64(json.dumps(header, separators=(",", ":")).encode()) + "."
        + _b64(json.dumps(claims, separators=(",", ":")).encode())
    )
    return signing_input + "." + _b64(key.sign(signing_input.encode("ascii")))


def new_claims(
    *, issuer: str, subject: str, audience: str, lifetime: int, accesses: Iterable[Access], now: int | None = None,
    generation: int | None = None,
) -> dict[str, Any]:
    """The claim set of an access token (``aud`` a string, as Distribution 2.8 requires)."""
    issued = int(time.time()) if now is None else now
    claims: dict[str, Any] = {
        "iss": issuer, "sub": subject, "aud": audience,
        "exp": issued + lifetime, "nbf": issued, "iat": issued,
        "jti": secrets.token_urlsafe(16),
        "access": access_claim(accesses),
    }
    if generation is not None:
        claims[GENERATION_CLAIM] = generation
    return claims


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    issuer: str
    subject: str
    issued_at: int
    accesses: frozenset[Access]
    claims: dict[str, Any] = field(repr=False)

    @property
    def generation(self) -> int | None:
        """The credential generation of an own-service token (None: the claim is absent or not an integer)."""
        value = self.claims.get(GENERATION_CLAIM)
        return value if isinstance(value, int) and not isinstance(value, bool) else None


def _accesses(claim: Any) -> frozenset[Access]:
    if claim is None:
        return frozenset()
    if not isinstance(claim, list):
        raise MalformedToken("access is not a list")
    found: set[Access] = set()
    for entry in claim:
        if not isinstance(entry, dict):
            raise MalformedToken("access entry is not an object")
        kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions") or []
        if not isinstance(kind, str) or not isinstance(name, str) or not isinstance(actions, list):
            raise MalformedToken("access entry needs type, name and actions")
        found.update(Access(kind, name, action) for action in actions if isinstance(action, str))
    return frozenset(found)


def _int_claim(claims: Mapping[str, Any], name: str, required: bool) -> int | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise MalformedToken(f"{name} is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MalformedToken(f"{name} is not a number")
    return int(value)


class Verifier:
    """Checks tokens against trusted issuers (each with its keys) for one audience (the service)."""

    def __init__(self, audience: str, leeway: int = LEEWAY_SECONDS) -> None:
        self.audience = audience
        self.leeway = leeway
        self._issuers: dict[str, dict[str, VerifyingKey]] = {}

    def trust(self, issuer: str, keys: Iterable[VerifyingKey]) -> None:
        self._issuers.setdefault(issuer, {}).update({key.kid: key for key in keys})

    def issuers(self) -> list[str]:
        return list(self._issuers)

    def keys(self, issuer: str) -> list[VerifyingKey]:
        return list(self._issuers.get(issuer, {}).values())

    def verify(self, token: str, now: float | None = None) -> VerifiedToken:
        if len(token) > MAX_TOKEN_LENGTH:
            raise MalformedToken("token too long")
        parts = token.split(".")
        if len(parts) != 3:
            raise MalformedToken("not a compact JWS")
        header = _json_object(_unb64(parts[0]), "header")
        payload = _unb64(parts[1])
        signature = _unb64(parts[2])
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
            raise AlgorithmRefused(f"algorithm {alg!r} is not allowed")
        if "crit" in header:
            raise MalformedToken("critical header extensions are not supported")
        # The issuer picks the key set; nothing else from the payload is used before the signature checks.
        claims = _json_object(payload, "claims")
        issuer = claims.get("iss")
        keys = self._issuers.get(issuer) if isinstance(issuer, str) else None
        if keys is None or not isinstance(issuer, str):
            raise UnknownIssuer(f"issuer {issuer!r} is not trusted")
        kid = header.get("kid")
        key = keys.get(kid) if isinstance(kid, str) else (next(iter(keys.values())) if len(keys) == 1 else None)
        if key is None:
            raise UnknownKey(f"no key {kid!r} for issuer {issuer!r}")
        if alg not in key.algorithms:
            raise AlgorithmRefused(f"key {key.kid} is not for {alg}")
        if not key.verify(alg, f"{parts[0]}.{parts[1]}".encode("ascii"), signature):
            raise BadSignature("signature does not verify")
        return self._check_claims(claims, issuer, time.time() if now is None else now)

    def _check_claims(self, claims: dict[str, Any], issuer: str, now: float) -> VerifiedToken:
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or self.audience not in audiences:
            raise WrongAudience(f"token is for {audience!r}, not {self.audience!r}")
        expires = _int_claim(claims, "exp", required=True)
        assert expires is not None
        if now > expires + self.leeway:
            raise TokenExpired("token expired")
        not_before = _int_claim(claims, "nbf", required=False)
        if not_before is not None and now < not_before - self.leeway:
            raise TokenNotYetValid("token not valid yet")
        issued = _int_claim(claims, "iat", required=False)
        subject = claims.get("sub", "")
        if not isinstance(subject, str):
            raise MalformedToken("sub is not a string")
        return VerifiedToken(
            issuer, subject, issued if issued is not None else 0, _accesses(claims.get("access")), claims
        )
