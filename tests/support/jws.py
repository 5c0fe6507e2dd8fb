"""A verifier of signed schema 1 manifests written from the JWS rules alone, not from cargohold's.

RFC 7515 (JWS), RFC 7518 (ES256 and RS256) and libtrust's pretty JWS, whose protected header's
``formatLength`` and ``formatTail`` give back the signed payload from the signed document.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_text(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jws_verify(raw: bytes) -> tuple[bytes, dict[str, Any]]:
    """The signed payload and the signer's JWK, after checking the one signature over it.

    libtrust's pretty JWS: the protected header's ``formatLength`` bytes of the document plus its
    base64url ``formatTail`` are the payload; the JWS signing input is ``protected.payload``
    (RFC 7515 5.2); ES256 signatures are r||s (RFC 7518 3.4), RS256 PKCS #1 v1.5.
    """
    document = json.loads(raw)
    (block,) = document["signatures"]
    header = json.loads(b64url(block["protected"]))
    payload = raw[: header["formatLength"]] + b64url(header["formatTail"])
    assert json.loads(payload) == {k: v for k, v in document.items() if k != "signatures"}
    signing_input = f"{block['protected']}.{b64url_text(payload)}".encode()
    signature = b64url(block["signature"])
    jwk, alg = block["header"]["jwk"], block["header"]["alg"]
    if jwk["kty"] == "EC":
        assert (jwk["crv"], alg) == ("P-256", "ES256")
        point = ec.EllipticCurvePublicNumbers(
            int.from_bytes(b64url(jwk["x"]), "big"), int.from_bytes(b64url(jwk["y"]), "big"), ec.SECP256R1()
        )
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        point.public_key().verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
    else:
        assert (jwk["kty"], alg) == ("RSA", "RS256")
        numbers = rsa.RSAPublicNumbers(int.from_bytes(b64url(jwk["e"]), "big"), int.from_bytes(b64url(jwk["n"]), "big"))
        numbers.public_key().verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
    return payload, jwk
