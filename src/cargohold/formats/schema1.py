"""Docker image manifest v2 schema 1 signatures: libtrust's "pretty JWS".

A signed schema 1 manifest is the manifest JSON with a ``signatures`` array
spliced in before its closing brace. Each signature's base64url ``protected``
header records ``formatLength`` and ``formatTail``, which undo the splice::

    payload = raw[:formatLength] + base64url_decode(formatTail)

and the JWS signing input is ``protected + "." + base64url(payload)``. The
payload is the manifest without signatures; Distribution and docker compute
a schema 1 manifest's digest from it, so re-signing keeps the digest.

Keys are JWKs in each signature's ``header`` (or the first certificate of an
``x5c`` chain): EC P-256/P-384/P-521 with ES256/ES384/ES512 (raw ``r||s``
signatures), or RSA with RS256/RS384/RS512. Signatures only show that the
bytes were not altered since signing; nothing here decides whether to trust
the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from . import _json
from .errors import ManifestError, ManifestSignatureError

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

#: The key libtrust splices the signatures in under.
SIGNATURES_KEY: Final = "signatures"

# JWK curve name -> (curve, JWS algorithm, hash, coordinate length in bytes)
_EC_CURVES: Final[dict[str, tuple[type[ec.EllipticCurve], str, type[hashes.HashAlgorithm], int]]] = {
    "P-256": (ec.SECP256R1, "ES256", hashes.SHA256, 32),
    "P-384": (ec.SECP384R1, "ES384", hashes.SHA384, 48),
    "P-521": (ec.SECP521R1, "ES512", hashes.SHA512, 66),
}
_RSA_ALGORITHMS: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "RS256": hashes.SHA256,
    "RS384": hashes.SHA384,
    "RS512": hashes.SHA512,
}


def b64url_encode(data: bytes) -> str:
    """JOSE base64url: URL-safe alphabet, no padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, where: str) -> bytes:
    """Inverse of :func:`b64url_encode`; refuses characters outside the alphabet."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ManifestSignatureError(f"{where}: invalid base64url: {exc}") from None


# -- verifying ---------------------------------------------------------------


def verify_signatures(raw: bytes) -> bytes:
    """Check every signature on a signed schema 1 manifest and return its payload.

    All signatures must agree on ``formatLength``/``formatTail`` (as libtrust
    requires) and every one must verify. The payload must also be the
    manifest minus ``signatures``, so that nothing outside the signed bytes
    can change what a reader of ``raw`` sees.

    :raises ManifestSignatureError: no signatures, or any of them is malformed
        or does not verify.
    :raises ManifestError: ``raw`` is not a JSON object at all.
    """
    manifest = _json.load_object(raw, "manifest")
    try:
        signatures = _json.expect_list(manifest.get(SIGNATURES_KEY), SIGNATURES_KEY)
        if not signatures:
            raise ManifestSignatureError("manifest has no signatures")
        blocks = [_json.expect_object(s, f"signatures[{i}]") for i, s in enumerate(signatures)]
        formats = {_protected_format(b, f"signatures[{i}]") for i, b in enumerate(blocks)}
    except ManifestSignatureError:
        raise
    except ManifestError as exc:
        raise ManifestSignatureError(str(exc)) from None
    if len(formats) != 1:
        raise ManifestSignatureError("signatures disagree on formatLength/formatTail")
    ((length, tail),) = formats
    if not 0 < length <= len(raw):
        raise ManifestSignatureError(f"formatLength {length} is outside the manifest ({len(raw)} bytes)")
    payload = raw[:length] + tail

    unsigned = _json.load_object(payload, "signed payload", ManifestSignatureError)
    if unsigned != {k: v for k, v in manifest.items() if k != SIGNATURES_KEY}:
        raise ManifestSignatureError("signed payload does not match the manifest")

    encoded_payload = b64url_encode(payload)
    for i, block in enumerate(blocks):
        _verify_block(block, encoded_payload, f"signatures[{i}]")
    return payload


def _protected_format(block: _json.JSONObject, where: str) -> tuple[int, bytes]:
    protected = _json.required_str(block, "protected", where)
    header = _json.load_object(
        b64url_decode(protected, f"{where}.protected"), f"{where}.protected", ManifestSignatureError
    )
    path = f"{where}.protected"
    length = _json.expect_int(_json.required(header, "formatLength", path), f"{path}.formatLength")
    tail = _json.required_str(header, "formatTail", path)
    return length, b64url_decode(tail, f"{path}.formatTail")


def _verify_block(block: _json.JSONObject, encoded_payload: str, where: str) -> None:
    try:
        header = _json.expect_object(_json.required(block, "header", where), f"{where}.header")
        algorithm = _json.required_str(header, "alg", f"{where}.header")
        key = _header_key(header, f"{where}.header")
        signature = b64url_decode(_json.required_str(block, "signature", where), f"{where}.signature")
    except ManifestSignatureError:
        raise
    except ManifestError as exc:
        raise ManifestSignatureError(str(exc)) from None
    signing_input = f"{block['protected']}.{encoded_payload}".encode("ascii")
    try:
        _verify(key, algorithm, signing_input, signature, where)
    except InvalidSignature:
        raise ManifestSignatureError(f"{where}: signature does not verify") from None


def _header_key(header: _json.JSONObject, where: str) -> PublicKey:
    """The signer's public key: the first ``x5c`` certificate's, else the ``jwk``."""
    chain = _json.string_list(header, "x5c", where)
    if chain:
        try:
            der = base64.b64decode(chain[0], validate=True)
            key = x509.load_der_x509_certificate(der).public_key()
        except ValueError as exc:
            raise ManifestSignatureError(f"{where}.x5c[0]: invalid certificate: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise ManifestSignatureError(f"{where}.x5c[0]: unsupported key type")
        return key
    if "jwk" not in header:
        raise ManifestSignatureError(f"{where}: no jwk or x5c public key")
    return public_key_from_jwk(_json.expect_object(header["jwk"], f"{where}.jwk"), f"{where}.jwk")


def public_key_from_jwk(jwk: Mapping[str, Any], where: str = "jwk") -> PublicKey:
    """Build an EC or RSA public key from its JWK (RFC 7518 section 6)."""
    kty = jwk.get("kty")
    try:
        if kty == "EC":
            crv = _json.expect_str(jwk.get("crv"), f"{where}.crv")
            if crv not in _EC_CURVES:
                raise ManifestSignatureError(f"{where}.crv: unsupported curve {crv!r}")
            curve, _, _, size = _EC_CURVES[crv]
            x = b64url_decode(_json.expect_str(jwk.get("x"), f"{where}.x"), f"{where}.x")
            y = b64url_decode(_json.expect_str(jwk.get("y"), f"{where}.y"), f"{where}.y")
            if len(x) != size or len(y) != size:
                raise ManifestSignatureError(f"{where}: {crv} coordinates must be {size} bytes")
            numbers = ec.EllipticCurvePublicNumbers(_int(x), _int(y), curve())
            return numbers.public_key()
        if kty == "RSA":
            n = b64url_decode(_json.expect_str(jwk.get("n"), f"{where}.n"), f"{where}.n")
            e = b64url_decode(_json.expect_str(jwk.get("e"), f"{where}.e"), f"{where}.e")
            return rsa.RSAPublicNumbers(_int(e), _int(n)).public_key()
    except ManifestSignatureError:
        raise
    except (ManifestError, ValueError) as exc:  # ValueError: not a point on the curve, bad RSA numbers
        raise ManifestSignatureError(f"{where}: invalid key: {exc}") from None
    raise ManifestSignatureError(f"{where}.kty: unsupported key type {kty!r}")


def _verify(key: PublicKey, algorithm: str, data: bytes, signature: bytes, where: str) -> None:
    """Raise InvalidSignature or ManifestSignatureError unless ``signature`` is good."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        crv, expected, hash_type, size = _ec_parameters(key.curve, where)
        if algorithm != expected:
            raise ManifestSignatureError(f"{where}: algorithm {algorithm!r} does not fit a {crv} key")
        if len(signature) != 2 * size:
            raise ManifestSignatureError(f"{where}: {algorithm} signature must be {2 * size} bytes")
        der = encode_dss_signature(_int(signature[:size]), _int(signature[size:]))
        key.verify(der, data, ec.ECDSA(hash_type()))
        return
    rsa_hash = _RSA_ALGORITHMS.get(algorithm)
    if rsa_hash is None:
        raise ManifestSignatureError(f"{where}: algorithm {algorithm!r} does not fit an RSA key")
    key.verify(signature, data, padding.PKCS1v15(), rsa_hash())


def _ec_parameters(curve: ec.EllipticCurve, where: str) -> tuple[str, str, type[hashes.HashAlgorithm], int]:
    for crv, (curve_type, algorithm, hash_type, size) in _EC_CURVES.items():
        if isinstance(curve, curve_type):
            return crv, algorithm, hash_type, size
    raise ManifestSignatureError(f"{where}: unsupported curve {curve.name}")


def _int(data: bytes) -> int:
    return int.from_bytes(data, "big")


# -- signing -----------------------------------------------------------------


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A new P-256 key, the kind docker and Distribution sign with by default."""
    return ec.generate_private_key(ec.SECP256R1())


def sign(
    payload: Mapping[str, Any] | bytes,
    private_key: PrivateKey,
    *,
    key_id: str | None = None,
    timestamp: datetime | None = None,
) -> bytes:
    """Sign a schema 1 manifest the way libtrust does and return the signed bytes.

    :param payload: the manifest without signatures, either as exact bytes or
        as an object, which is serialized like Go's ``json.MarshalIndent`` with
        a three-space indent (what Distribution signs).
    :param private_key: EC (ES256/ES384/ES512 by curve) or RSA (RS256).
    :param key_id: the JWK ``kid``; by default libtrust's key fingerprint.
    :param timestamp: the protected header's ``time`` (naive means UTC); by default now.
    """
    content = payload if isinstance(payload, bytes) else marshal_indent(payload)
    if SIGNATURES_KEY in _json.load_object(content, "payload"):
        raise ManifestError("payload is already signed; sign the manifest without its signatures")
    # The signatures go after the last value: keep everything up to it, and
    # the whitespace plus closing brace after it becomes formatTail.
    body = content.rstrip()
    length = len(body[:-1].rstrip())
    if not body.endswith(b"}") or body[length - 1 : length] in (b"{", b","):
        raise ManifestError("payload must be a non-empty JSON object")
    moment = timestamp or datetime.now(UTC)
    if moment.tzinfo is None:  # naive: taken as UTC, not as local time
        moment = moment.replace(tzinfo=UTC)
    when = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    protected_header = {"formatLength": length, "formatTail": b64url_encode(content[length:]), "time": when}
    protected = b64url_encode(json.dumps(protected_header, separators=(",", ":"), sort_keys=True).encode())

    signing_input = f"{protected}.{b64url_encode(content)}".encode("ascii")
    public_key = private_key.public_key()
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        _, algorithm, hash_type, size = _ec_parameters(private_key.curve, "private_key")
        r, s = decode_dss_signature(private_key.sign(signing_input, ec.ECDSA(hash_type())))
        signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    else:
        algorithm = "RS256"
        signature = private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    block = {
        "header": {"jwk": jwk_from_public_key(public_key, key_id), "alg": algorithm},
        "signature": b64url_encode(signature),
        "protected": protected,
    }
    indent = _detect_indent(content)
    if indent:
        signatures = json.dumps([block], indent=indent).replace("\n", "\n" + indent)
        splice = f',\n{indent}"{SIGNATURES_KEY}": {signatures}\n}}'
    else:
        splice = f',"{SIGNATURES_KEY}":{json.dumps([block], separators=(",", ":"))}}}'
    return content[:length] + splice.encode("ascii")


def jwk_from_public_key(key: PublicKey, key_id: str | None = None) -> dict[str, str]:
    """The JWK of ``key``, members in libtrust's (sorted) order."""
    kid = key_id or key_fingerprint(key)
    if isinstance(key, ec.EllipticCurvePublicKey):
        crv, _, _, size = _ec_parameters(key.curve, "key")
        numbers = key.public_numbers()
        return {
            "crv": crv,
            "kid": kid,
            "kty": "EC",
            "x": b64url_encode(numbers.x.to_bytes(size, "big")),
            "y": b64url_encode(numbers.y.to_bytes(size, "big")),
        }
    rsa_numbers = key.public_numbers()
    return {
        "e": b64url_encode(rsa_numbers.e.to_bytes((rsa_numbers.e.bit_length() + 7) // 8, "big")),
        "kid": kid,
        "kty": "RSA",
        "n": b64url_encode(rsa_numbers.n.to_bytes((rsa_numbers.n.bit_length() + 7) // 8, "big")),
    }


def key_fingerprint(key: PublicKey) -> str:
    """libtrust's key ID: SHA-256 of the SubjectPublicKeyInfo, 240 bits, base32 in groups of 4."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    text = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii").rstrip("=")
    return ":".join(text[i : i + 4] for i in range(0, len(text), 4))


def marshal_indent(obj: Mapping[str, Any]) -> bytes:
    """JSON like Go's ``json.MarshalIndent(obj, "", "   ")``, HTML-safe escapes included."""
    text = json.dumps(obj, indent=3, ensure_ascii=False)
    for char, escape in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, escape)  # these only occur inside strings
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text.encode("utf-8")


def _detect_indent(content: bytes) -> str:
    """libtrust's rule: the whitespace between ``{\\n`` and the first quote."""
    if len(content) > 2 and content[:2] == b"{\n":
        quote = content.find(b'"', 1)
        if quote > 1:
            return content[2:quote].decode("ascii", errors="replace")
    return ""
