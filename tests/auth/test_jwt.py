"""JWS signing and strict verification on their own: algorithms, keys, claims, JWKS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cargohold.auth.access import Access
from cargohold.auth.jwt import (
    AlgorithmRefused,
    BadSignature,
    MalformedToken,
    TokenExpired,
    TokenNotYetValid,
    UnknownIssuer,
    UnknownKey,
    Verifier,
    WrongAudience,
    encode,
    new_claims,
)
from cargohold.auth.keys import (
    KeyFileError,
    SigningKey,
    ensure_signing_key,
    jwks,
    libtrust_key_id,
    load_public_keys,
    parse_jwks,
)

EC_KEY = SigningKey.of(ec.generate_private_key(ec.SECP256R1()))
RSA_KEY = SigningKey.of(rsa.generate_private_key(public_exponent=65537, key_size=2048))
PULL = Access("repository", "a/b", "pull")


def token(key: SigningKey = EC_KEY, **changes: object) -> str:
    claims = new_claims(issuer="iss", subject="alice", audience="svc", lifetime=300, accesses=[PULL])
    claims.update(changes)
    return encode(claims, key)


def verifier(*keys: SigningKey) -> Verifier:
    checker = Verifier("svc")
    checker.trust("iss", [k.public for k in keys or (EC_KEY, RSA_KEY)])
    return checker


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parts(value: str) -> tuple[dict[str, object], dict[str, object], str]:
    header, payload, signature = value.split(".")
    decode = lambda s: json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))  # noqa: E731
    return decode(header), decode(payload), signature


@pytest.mark.parametrize(("key", "alg"), [(EC_KEY, "ES256"), (RSA_KEY, "RS256")])
def test_sign_and_verify(key: SigningKey, alg: str) -> None:
    value = token(key)
    header, claims, _ = parts(value)
    assert header == {"typ": "JWT", "alg": alg, "kid": key.kid}
    verified = verifier().verify(value)
    assert (verified.issuer, verified.subject, verified.accesses) == ("iss", "alice", frozenset({PULL}))


def test_es256_signatures_are_raw_r_and_s() -> None:
    signature = token().split(".")[2]
    assert len(base64.urlsafe_b64decode(signature + "==")) == 64


def test_libtrust_key_id_is_twelve_groups_of_base32() -> None:
    kid = libtrust_key_id(EC_KEY.public.key)
    groups = kid.split(":")
    assert len(groups) == 12 and all(len(g) == 4 for g in groups)
    assert kid == EC_KEY.kid


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: token(exp=int(time.time()) - 31), TokenExpired),
        (lambda: token(nbf=int(time.time()) + 31), TokenNotYetValid),
        (lambda: token(iat=int(time.time()) + 31), TokenNotYetValid),
        (lambda: token(aud="other"), WrongAudience),
        (lambda: token(aud=["other", "more"]), WrongAudience),
        (lambda: token(iss="mallory"), UnknownIssuer),
        (lambda: token(exp=None), MalformedToken),
        (lambda: token(exp="soon"), MalformedToken),
        (lambda: token(exp=float("inf")), MalformedToken),
        (lambda: token(nbf=float("nan")), MalformedToken),
        (lambda: base64.urlsafe_b64encode(b"[" * 2000 + b"]" * 2000).decode().rstrip("=") + ".e30.", MalformedToken),
        (lambda: b64(b"[" * 6000 + b"]" * 6000) + ".e30.", MalformedToken),
        (lambda: token().split(".")[0] + "." + b64(b'{"iss":"iss","x":' + b"[" * 100 + b"]" * 100 + b"}") + ".",
         MalformedToken),
        (lambda: token(SigningKey.of(ec.generate_private_key(ec.SECP256R1()))), UnknownKey),
        (lambda: "a.b", MalformedToken),
        (lambda: "e30.e30.", AlgorithmRefused),
    ],
)
def test_refusals(make: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        verifier().verify(make())  # type: ignore[operator]


def test_leeway_forgives_small_skew() -> None:
    now = int(time.time())
    verifier().verify(token(exp=now - 20, nbf=now + 20))


def test_audience_may_be_a_list() -> None:
    assert verifier().verify(token(aud=["x", "svc"])).subject == "alice"


def test_the_algorithm_must_fit_the_key() -> None:
    header, claims, signature = token(RSA_KEY).split(".")
    forged_header = base64.urlsafe_b64encode(json.dumps(
        {"alg": "ES256", "kid": RSA_KEY.kid}).encode()).rstrip(b"=").decode()
    with pytest.raises(AlgorithmRefused):
        verifier().verify(f"{forged_header}.{claims}.{signature}")
    none_header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    with pytest.raises(AlgorithmRefused):
        verifier().verify(f"{none_header}.{claims}.")


def test_hmac_keyed_with_the_public_key_is_refused() -> None:
    """The classic confusion: HS256 "signed" with the verifying key's PEM as the secret."""
    pem = EC_KEY.public.key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = b64(json.dumps({"alg": "HS256", "kid": EC_KEY.kid}).encode()) + "." + token().split(".")[1]
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(AlgorithmRefused):
        verifier().verify(f"{signing_input}.{b64(mac)}")


def test_a_remembered_token_still_expires() -> None:
    checker = Verifier("svc", leeway=0)
    checker.trust("iss", [EC_KEY.public])
    expires = int(time.time()) + 2
    value = token(exp=expires)
    assert checker.verify(value).subject == "alice"
    assert checker.verify(value).subject == "alice"
    time.sleep(max(0.0, expires - time.time()) + 0.05)
    with pytest.raises(TokenExpired):
        checker.verify(value)


def test_tampering_breaks_the_signature() -> None:
    header, payload, signature = token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "root"
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(BadSignature):
        verifier().verify(f"{header}.{payload}.{signature}")


def test_jwks_round_trip() -> None:
    document = jwks([EC_KEY.public, RSA_KEY.public])
    keys = parse_jwks(json.dumps(document))
    assert [k.kid for k in keys] == [EC_KEY.kid, RSA_KEY.kid]
    checker = Verifier("svc")
    checker.trust("iss", keys)
    checker.verify(token(RSA_KEY))
    with pytest.raises(KeyFileError):
        parse_jwks({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})
    with pytest.raises(KeyFileError):
        parse_jwks({"keys": [{**document["keys"][0], "alg": "HS256"}]})


def test_jwks_output_and_refusals() -> None:
    ec_jwk, rsa_jwk = jwks([EC_KEY.public, RSA_KEY.public])["keys"]
    assert set(ec_jwk) == {"kty", "crv", "kid", "alg", "use", "x", "y"}
    assert (ec_jwk["kty"], ec_jwk["crv"], ec_jwk["alg"], ec_jwk["use"]) == ("EC", "P-256", "ES256", "sig")
    assert set(rsa_jwk) == {"kty", "kid", "alg", "use", "n", "e"} and rsa_jwk["alg"] == "RS256"
    private = EC_KEY.key.private_numbers().private_value  # type: ignore[union-attr]
    for bad in (
        {"keys": [{**ec_jwk, "d": b64(private.to_bytes(32, "big"))}]},  # a private key does not belong in a JWKS
        {"keys": [{**rsa_jwk, "alg": "PS256"}]},
        {"keys": [{**ec_jwk, "crv": "secp256k1"}]},
        {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": ec_jwk["x"]}]},
        '{"keys": [',
        "[" * 100 + "]" * 100,
        b"\xff",
    ):
        with pytest.raises(KeyFileError):
            parse_jwks(bad)  # type: ignore[arg-type]
    assert parse_jwks({"keys": [{**ec_jwk, "use": "enc"}, rsa_jwk]})[0].kid == RSA_KEY.kid


def test_generated_key_and_certificate(tmp_path: Path) -> None:
    key = ensure_signing_key(tmp_path / "k.pem", tmp_path / "c.pem")
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    assert [k.kid for k in load_public_keys(tmp_path / "c.pem")] == [key.kid]
    assert ensure_signing_key(tmp_path / "k.pem", tmp_path / "c.pem").kid == key.kid
    (tmp_path / "c.pem").write_text("stale")
    ensure_signing_key(tmp_path / "k.pem", tmp_path / "c.pem")
    assert [k.kid for k in load_public_keys(tmp_path / "c.pem")] == [key.kid]
