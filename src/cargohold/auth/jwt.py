"""JSON Web Tokens as Distribution's token spec uses them (``docs/spec/auth/jwt.md``).

Compact JWS signed with ES256 or RS256 and naming its key by ``kid``; PyJWT
does the encoding, the signatures and the registered claims. What is
cargohold's: the key is found by the claimed issuer and ``kid`` (the libtrust
fingerprint, see ``keys.py``), only the algorithms of that key are allowed
(never ``none``, never HMAC), ``exp`` is required, ``aud`` must name this
service, and the ``access`` claim becomes a set of :class:`Access`. The
issuer is the one thing read from the payload before the signature is
checked; it only picks the key set.

Tokens of cargohold's own service also carry the private claim
:data:`GENERATION_CLAIM`: the credential generation of their account when it
logged in (see :mod:`cargohold.metadata.access`), so that a token can be voided by a change made
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
    └── TokenNotYetValid      nbf or iat is ahead (beyond the leeway)
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import jwt
from jwt.types import Options

from .. import jsontext
from .access import Access
from .keys import ALLOWED_ALGORITHMS, SigningKey, VerifyingKey

#: seconds of clock skew forgiven on exp, nbf and iat (Distribution allows 60)
LEEWAY_SECONDS: Final = 30
#: longest accepted token; a bound on work before the signature check
MAX_TOKEN_LENGTH: Final = 16 * 1024
#: private claim: the account's credential generation the token was issued under
GENERATION_CLAIM: Final = "cargohold_gen"
#: verified tokens remembered until they expire: a client sends one token with many requests, and
#: a hit spares the signature and PyJWT's two passes over the token (~300 us a miss, bench: 0.3 us a hit)
VERIFIED_TOKENS_KEPT: Final = 1024


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


#: PyJWT's refusals that have a class of their own here; any other is a MalformedToken
_REFUSALS: Final[tuple[tuple[type[jwt.PyJWTError], type[TokenInvalid]], ...]] = (
    (jwt.InvalidAlgorithmError, AlgorithmRefused),
    (jwt.InvalidSignatureError, BadSignature),
    (jwt.InvalidAudienceError, WrongAudience),
    (jwt.ExpiredSignatureError, TokenExpired),
    (jwt.ImmatureSignatureError, TokenNotYetValid),
)


def _refusal(exc: jwt.PyJWTError) -> TokenInvalid:
    kind = next((ours for theirs, ours in _REFUSALS if isinstance(exc, theirs)), MalformedToken)
    return kind(str(exc))


class _BoundedJWT(jwt.PyJWT):
    """PyJWT reading the claims with :func:`jsontext.loads`, whose nesting bound all JSON from the network gets.

    (The header's JSON PyJWT reads itself; text nested past the recursion limit is a DecodeError there.)
    """

    def _decode_payload(self, decoded: dict[str, Any]) -> dict[str, Any]:
        try:
            payload = jsontext.loads(decoded["payload"])
        except ValueError as exc:  # UnicodeDecodeError and JSONTooDeep too
            raise jwt.DecodeError(f"Invalid payload string: {exc}") from None
        if not isinstance(payload, dict):
            raise jwt.DecodeError("Invalid payload string: must be a json object")
        return payload


_JWT: Final = _BoundedJWT()
#: reading a token before its key is known: no signature, no claim checked
_UNVERIFIED: Final[Options] = {"verify_signature": False}
#: checked by PyJWT once the key is known, besides the signature, iss and aud
_REQUIRED: Final[Options] = {"require": ["exp"]}


def access_claim(accesses: Iterable[Access]) -> list[dict[str, Any]]:
    """The ``access`` claim: one entry per resource, its actions sorted."""
    grouped: dict[tuple[str, str], set[str]] = {}
    for access in accesses:
        grouped.setdefault((access.type, access.name), set()).add(access.action)
    return [
        {"type": kind, "name": name, "actions": sorted(actions)} for (kind, name), actions in sorted(grouped.items())
    ]


def encode(claims: Mapping[str, Any], key: SigningKey) -> str:
    return _JWT.encode(dict(claims), key.key, algorithm=key.algorithm, headers={"kid": key.kid})


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


class Verifier:
    """Checks tokens against trusted issuers (each with its keys) for one audience (the service)."""

    def __init__(self, audience: str, leeway: int = LEEWAY_SECONDS) -> None:
        self.audience = audience
        self.leeway = leeway
        self._issuers: dict[str, dict[str, VerifyingKey]] = {}
        #: token -> (until when it is valid, what it says)
        self._verified: dict[str, tuple[float, VerifiedToken]] = {}

    def trust(self, issuer: str, keys: Iterable[VerifyingKey]) -> None:
        self._issuers.setdefault(issuer, {}).update({key.kid: key for key in keys})

    def issuers(self) -> list[str]:
        return list(self._issuers)

    def keys(self, issuer: str) -> list[VerifyingKey]:
        return list(self._issuers.get(issuer, {}).values())

    def verify(self, token: str) -> VerifiedToken:
        until, verified = self._verified.get(token, (0.0, None))
        if verified is not None and time.time() < until:
            return verified  # valid once, it stays so until exp: nbf and iat are behind it for good
        verified = self._verify(token)
        if len(self._verified) >= VERIFIED_TOKENS_KEPT:
            self._verified.clear()
        self._verified[token] = (int(verified.claims["exp"]) + self.leeway, verified)
        return verified

    def _verify(self, token: str) -> VerifiedToken:
        if len(token) > MAX_TOKEN_LENGTH:
            raise MalformedToken("token too long")
        try:
            unverified = _JWT.decode_complete(token, options=_UNVERIFIED)
        except jwt.PyJWTError as exc:
            raise _refusal(exc) from None
        header, issuer = unverified["header"], unverified["payload"].get("iss")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
            raise AlgorithmRefused(f"algorithm {alg!r} is not allowed")
        keys = self._issuers.get(issuer) if isinstance(issuer, str) else None
        if keys is None or not isinstance(issuer, str):
            raise UnknownIssuer(f"issuer {issuer!r} is not trusted")
        kid = header.get("kid")
        key = keys.get(kid) if isinstance(kid, str) else (next(iter(keys.values())) if len(keys) == 1 else None)
        if key is None:
            raise UnknownKey(f"no key {kid!r} for issuer {issuer!r}")
        try:
            claims = _JWT.decode(
                token, key.key, algorithms=key.algorithms, options=_REQUIRED,
                audience=self.audience, issuer=issuer, leeway=self.leeway,
            )
        except jwt.PyJWTError as exc:
            raise _refusal(exc) from None
        return VerifiedToken(
            issuer, claims.get("sub", ""), int(claims.get("iat", 0)), _accesses(claims.get("access")), claims
        )
