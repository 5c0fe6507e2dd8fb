"""Schema 1 pretty-JWS: verification against independently built signatures, and signing."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from cargohold.digest import Digest
from cargohold.formats import ManifestError, ManifestSignatureError, MediaType, parse_manifest
from cargohold.formats.schema1 import generate_key, key_fingerprint, public_key_from_jwk, sign, verify_signatures

from ._builders import schema1_payload

SIGNED = MediaType.DOCKER_SCHEMA1_SIGNED


# -- an independent signer: JWS built by hand with `cryptography` ---------------
# Deliberately shares nothing with cargohold.formats.schema1, so the verifier
# is not only checked against its own signer.


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hand_signature(payload: bytes, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> dict[str, Any]:
    """One signature block over ``payload`` whose tail is its final ``\\n}``."""
    assert payload.endswith(b"\n}")
    protected_json = json.dumps(
        {"formatLength": len(payload) - 2, "formatTail": b64url(b"\n}"), "time": "2015-04-08T18:52:59Z"}
    )
    protected = b64url(protected_json.encode())
    signing_input = (protected + "." + b64url(payload)).encode()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        numbers = key.public_key().public_numbers()
        jwk = {
            "crv": "P-256",
            "kty": "EC",
            "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big")),
        }
        alg = "ES256"
    else:
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA512())
        rsa_numbers = key.public_key().public_numbers()
        jwk = {
            "kty": "RSA",
            "n": b64url(rsa_numbers.n.to_bytes(256, "big")),
            "e": b64url(rsa_numbers.e.to_bytes(3, "big")),
        }
        alg = "RS512"
    return {"header": {"jwk": jwk, "alg": alg}, "signature": b64url(signature), "protected": protected}


def splice(payload: bytes, blocks: list[dict[str, Any]]) -> bytes:
    """libtrust's layout: signatures inserted before the payload's closing brace."""
    signatures = json.dumps(blocks, indent=3).replace("\n", "\n   ")
    return payload[:-2] + b',\n   "signatures": ' + signatures.encode() + b"\n}"


PAYLOAD = json.dumps(schema1_payload(), indent=3).encode()


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def hand_signed(ec_key: ec.EllipticCurvePrivateKey) -> bytes:
    return splice(PAYLOAD, [hand_signature(PAYLOAD, ec_key)])


def test_hand_built_ec_signature_verifies(hand_signed: bytes) -> None:
    assert verify_signatures(hand_signed) == PAYLOAD
    manifest = parse_manifest(hand_signed, SIGNED)
    assert manifest.media_type == SIGNED
    assert manifest.raw == hand_signed
    assert manifest.payload == PAYLOAD
    # the digest covers the payload, not the signed bytes
    assert manifest.digest == Digest("sha256", hashlib.sha256(PAYLOAD).hexdigest())
    assert manifest.descriptor().size == len(PAYLOAD)
    assert (manifest.name, manifest.tag) == ("library/hello", "latest")


def test_hand_built_rsa_signature_verifies(rsa_key: rsa.RSAPrivateKey) -> None:
    raw = splice(PAYLOAD, [hand_signature(PAYLOAD, rsa_key)])
    assert verify_signatures(raw) == PAYLOAD


def test_every_signature_must_verify(ec_key: ec.EllipticCurvePrivateKey, rsa_key: rsa.RSAPrivateKey) -> None:
    good = [hand_signature(PAYLOAD, ec_key), hand_signature(PAYLOAD, rsa_key)]
    assert verify_signatures(splice(PAYLOAD, good)) == PAYLOAD
    forged = dict(good[1], signature=good[0]["signature"])
    with pytest.raises(ManifestSignatureError, match=r"signatures\[1\]"):
        verify_signatures(splice(PAYLOAD, [good[0], forged]))


def test_signature_from_an_x5c_certificate(ec_key: ec.EllipticCurvePrivateKey) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ec_key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(ec_key, hashes.SHA256())
    )
    block = hand_signature(PAYLOAD, ec_key)
    chain = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
    block["header"] = {"x5c": chain, "alg": "ES256"}
    assert verify_signatures(splice(PAYLOAD, [block])) == PAYLOAD


# -- tampering ------------------------------------------------------------------


def test_tampered_payload_byte_fails(hand_signed: bytes) -> None:
    tampered = hand_signed.replace(b'"latest"', b'"lateSt"', 1)
    assert tampered != hand_signed
    with pytest.raises(ManifestSignatureError, match="does not verify"):
        parse_manifest(tampered, SIGNED)


def test_tampered_signature_fails(hand_signed: bytes) -> None:
    doc = json.loads(hand_signed)
    signature = bytearray(unb64url(doc["signatures"][0]["signature"]))
    signature[5] ^= 1
    raw = hand_signed.replace(doc["signatures"][0]["signature"].encode(), b64url(bytes(signature)).encode())
    with pytest.raises(ManifestSignatureError, match=r"signatures\[0\]: signature does not verify"):
        verify_signatures(raw)


def test_fields_smuggled_outside_the_payload_fail(hand_signed: bytes) -> None:
    raw = hand_signed[:-2] + b',\n   "architecture2": "arm64"\n}'
    with pytest.raises(ManifestSignatureError, match="payload does not match the manifest"):
        verify_signatures(raw)


@pytest.mark.parametrize("signatures", [None, [], "x"])
def test_missing_signatures_fail(signatures: object) -> None:
    doc = schema1_payload()
    if signatures is not None:
        doc["signatures"] = signatures
    with pytest.raises(ManifestSignatureError):
        verify_signatures(json.dumps(doc).encode())
    if signatures is None:  # an unsigned body labelled as signed
        with pytest.raises(ManifestSignatureError, match="no signatures"):
            parse_manifest(json.dumps(doc).encode(), SIGNED)


def test_signed_body_labelled_unsigned_is_still_verified(hand_signed: bytes) -> None:
    manifest = parse_manifest(hand_signed, MediaType.DOCKER_SCHEMA1)
    assert manifest.media_type == SIGNED
    with pytest.raises(ManifestSignatureError):
        parse_manifest(hand_signed.replace(b'"latest"', b'"lateSt"', 1), MediaType.DOCKER_SCHEMA1)


def _edit_block(raw: bytes, **changes: Any) -> bytes:
    doc = json.loads(raw)
    block = doc["signatures"][0]
    for key, value in changes.items():
        if key == "protected_header":
            block["protected"] = b64url(json.dumps(value).encode())
        elif key in ("alg", "jwk"):
            block["header"][key] = value
        else:
            block[key] = value
    return splice(PAYLOAD, [block])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"protected": "%%%"}, r"signatures\[0\].protected: invalid base64url"),
        ({"protected": b64url(b"[]")}, "must be a JSON object"),
        ({"protected_header": {"formatTail": "Cn0"}}, "formatLength: required field is missing"),
        (
            {"protected_header": {"formatLength": "9", "formatTail": "Cn0"}},
            "formatLength: must be an integer",
        ),
        ({"protected_header": {"formatLength": 10**6, "formatTail": "Cn0"}}, "outside the manifest"),
        ({"protected_header": {"formatLength": 0, "formatTail": "Cn0"}}, "outside the manifest"),
        ({"protected_header": {"formatLength": 40}}, "formatTail: required field is missing"),
        ({"signature": "!!"}, r"signatures\[0\].signature: invalid base64url"),
        ({"signature": b64url(b"short")}, "ES256 signature must be 64 bytes"),
        ({"alg": "ES384"}, "algorithm 'ES384' does not fit a P-256 key"),
        ({"alg": "HS256"}, "algorithm 'HS256' does not fit a P-256 key"),
        ({"jwk": {"kty": "oct", "k": "c2VjcmV0"}}, "unsupported key type 'oct'"),
        ({"jwk": {"kty": "EC", "crv": "P-192", "x": "AA", "y": "AA"}}, "unsupported curve 'P-192'"),
        (
            {"jwk": {"kty": "EC", "crv": "P-256", "x": b64url(b"\1" * 32), "y": b64url(b"\2" * 32)}},
            "invalid key",
        ),
        ({"jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}}, "coordinates must be 32 bytes"),
        ({"jwk": "not a key"}, r"header.jwk: must be an object"),
        ({"header": {"alg": "ES256"}}, "no jwk or x5c public key"),
        ({"header": {"jwk": {}}}, r"header.alg: required field is missing"),
    ],
)
def test_malformed_signatures(hand_signed: bytes, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestSignatureError, match=message):
        verify_signatures(_edit_block(hand_signed, **changes))


def test_rsa_key_with_an_ec_algorithm_fails(rsa_key: rsa.RSAPrivateKey) -> None:
    raw = splice(PAYLOAD, [hand_signature(PAYLOAD, rsa_key)])
    with pytest.raises(ManifestSignatureError, match="does not fit an RSA key"):
        verify_signatures(_edit_block(raw, alg="ES256"))
    with pytest.raises(ManifestSignatureError, match="does not verify"):
        verify_signatures(_edit_block(raw, alg="RS256"))  # right family, wrong hash


def test_signatures_must_agree_on_the_format(ec_key: ec.EllipticCurvePrivateKey) -> None:
    first = hand_signature(PAYLOAD, ec_key)
    second = dict(first, protected=b64url(json.dumps({"formatLength": 3, "formatTail": "fQ"}).encode()))
    with pytest.raises(ManifestSignatureError, match="disagree"):
        verify_signatures(splice(PAYLOAD, [first, second]))


# -- signing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_key", "alg"),
    [
        (lambda: ec.generate_private_key(ec.SECP256R1()), "ES256"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "ES384"),
        (lambda: ec.generate_private_key(ec.SECP521R1()), "ES512"),
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
    ],
)
def test_sign_then_verify(make_key: Any, alg: str) -> None:
    raw = sign(schema1_payload(), make_key())
    payload = verify_signatures(raw)
    assert json.loads(payload) == schema1_payload()
    assert json.loads(raw)["signatures"][0]["header"]["alg"] == alg
    manifest = parse_manifest(raw, SIGNED)
    assert manifest.digest == Digest.of(payload)
    assert (manifest.name, manifest.tag, len(manifest.layers)) == ("library/hello", "latest", 2)


def test_sign_produces_libtrust_layout() -> None:
    raw = sign(schema1_payload(), generate_key(), timestamp=datetime.datetime(2015, 4, 8, 18, 52, 59))
    doc = json.loads(raw)
    protected = json.loads(unb64url(doc["signatures"][0]["protected"]))
    assert protected["time"] == "2015-04-08T18:52:59Z"
    assert protected["formatTail"] == "Cn0"  # "\n}"
    length = protected["formatLength"]
    # the payload is Go's MarshalIndent with three spaces, spliced before the final brace
    assert raw[:length] + b"\n}" == json.dumps(schema1_payload(), indent=3).encode()
    assert raw[length:].startswith(b',\n   "signatures": [\n      {\n         "header": {\n')
    assert raw.endswith(b"\n   ]\n}")
    assert list(doc["signatures"][0]["header"]["jwk"]) == ["crv", "kid", "kty", "x", "y"]


def test_sign_escapes_like_go() -> None:
    raw = sign(schema1_payload(tag="a<b>&c"), generate_key())
    assert b'"tag": "a\\u003cb\\u003e\\u0026c"' in raw
    assert json.loads(verify_signatures(raw))["tag"] == "a<b>&c"


def test_sign_keeps_exact_payload_bytes() -> None:
    for payload in (PAYLOAD, json.dumps(schema1_payload()).encode(), PAYLOAD + b"\n\n"):
        raw = sign(payload, generate_key())
        assert verify_signatures(raw) == payload
    compact = sign(json.dumps(schema1_payload(), separators=(",", ":")).encode(), generate_key())
    assert b'"signatures":[{"header"' in compact


def test_resigning_keeps_the_digest() -> None:
    first = parse_manifest(sign(PAYLOAD, generate_key()), SIGNED)
    second = parse_manifest(sign(PAYLOAD, generate_key(), key_id="my-key"), SIGNED)
    assert first.raw != second.raw
    assert first.digest == second.digest
    assert json.loads(second.raw)["signatures"][0]["header"]["jwk"]["kid"] == "my-key"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"[]", "must be a JSON object"),
        (b"{}", "non-empty JSON object"),
        (b"{\n}", "non-empty JSON object"),
        (b"not json", "not valid JSON"),
    ],
)
def test_sign_refuses_bad_payloads(payload: bytes, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        sign(payload, generate_key())


def test_sign_refuses_an_already_signed_manifest(hand_signed: bytes) -> None:
    with pytest.raises(ManifestError, match="already signed"):
        sign(hand_signed, generate_key())


# -- key IDs ------------------------------------------------------------------------


def test_key_id_matches_libtrust() -> None:
    # the key and kid from the example in distribution's docs/spec/manifest-v2-1.md
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": "3gAwX48IQ5oaYQAYSxor6rYYc_6yjuLCjtQ9LUakg4A",
        "y": "t72ge6kIA1XOjqjVoEOiPPAURltJFBMGDSQvEGVB010",
    }
    assert (
        key_fingerprint(public_key_from_jwk(jwk))
        == "OD6I:6DRK:JXEJ:KBM4:255X:NSAA:MUSF:E4VM:ZI6W:CUN2:L4Z6:LSF4"
    )


def test_rsa_jwk_round_trips(rsa_key: rsa.RSAPrivateKey) -> None:
    raw = sign(PAYLOAD, rsa_key)
    jwk = json.loads(raw)["signatures"][0]["header"]["jwk"]
    assert jwk["e"] == "AQAB"
    assert public_key_from_jwk(jwk).public_numbers() == rsa_key.public_key().public_numbers()


def test_invalid_x5c_certificate_fails(hand_signed: bytes) -> None:
    doc = json.loads(hand_signed)
    block = doc["signatures"][0]
    block["header"] = {"x5c": [base64.b64encode(b"not a certificate").decode()], "alg": "ES256"}
    with pytest.raises(ManifestSignatureError, match=r"x5c\[0\]: invalid certificate"):
        verify_signatures(splice(PAYLOAD, [block]))


def test_sign_refuses_keys_libtrust_cannot_express() -> None:
    with pytest.raises(ValueError, match="unsupported curve secp256k1"):
        sign(PAYLOAD, ec.generate_private_key(ec.SECP256K1()))
