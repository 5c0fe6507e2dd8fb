"""Token signing keys: loading, generating, key IDs, JWK and JWKS.

Keys are EC P-256 (ES256) or RSA of at least 2048 bits (RS256). The ``kid`` of
a key is its libtrust fingerprint: the SHA-256 of its DER ``SubjectPublicKeyInfo``,
cut to 240 bits, base32, in twelve groups of four joined by ``:``. Distribution
2.8 looks a token's ``kid`` up among the keys of its ``rootcertbundle`` by that
fingerprint, so using it as the ``kid`` lets Distribution trust cargohold's
tokens given only the certificate that :func:`generate_signing_key` writes.
JWK encoding and decoding is PyJWT's; this module adds the ``kid`` and the
algorithm allow-list.

:class:`KeyFileError` covers unreadable files, unsupported key types and malformed JWKs.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from jwt import PyJWK, PyJWTError
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from .. import jsontext

PublicKeyType = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
PrivateKeyType = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

#: curve -> the one JWS algorithm for it
_EC_ALGORITHMS: Final = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_RSA_ALGORITHMS: Final = frozenset({"RS256", "RS384", "RS512"})
#: the algorithms a token may name; anything else (``none``, HMAC, PSS, EdDSA) is refused
ALLOWED_ALGORITHMS: Final = frozenset(_EC_ALGORITHMS.values()) | _RSA_ALGORITHMS
MIN_RSA_BITS: Final = 2048
#: the self-signed certificate's lifetime; it only carries the key to Distribution-style verifiers
CERT_DAYS: Final = 3650


class KeyFileError(ValueError):
    """A key, certificate or JWKS cannot be read or is not a supported key."""


def libtrust_key_id(key: PublicKeyType) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii").rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))


def _algorithms_for(key: object) -> frozenset[str]:
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _EC_ALGORITHMS:
            raise KeyFileError(f"unsupported curve {key.curve.name} (P-256, P-384 or P-521)")
        return frozenset({_EC_ALGORITHMS[key.curve.name]})
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyFileError("only EC and RSA public keys can verify tokens (not a private or symmetric key)")
    if key.key_size < MIN_RSA_BITS:
        raise KeyFileError(f"RSA keys need at least {MIN_RSA_BITS} bits, not {key.key_size}")
    return _RSA_ALGORITHMS


@dataclass(frozen=True, slots=True)
class VerifyingKey:
    """A public key trusted for tokens, with its ``kid`` and the algorithms it may be used with."""

    kid: str
    key: PublicKeyType
    #: sorted, as PyJWT's ``algorithms`` argument
    algorithms: tuple[str, ...]

    @classmethod
    def of(cls, key: PublicKeyType, kid: str | None = None, alg: str | None = None) -> VerifyingKey:
        allowed = _algorithms_for(key)
        if alg is not None:
            if alg not in allowed:
                raise KeyFileError(f"algorithm {alg} does not fit this key")
            allowed = frozenset({alg})
        return cls(kid or libtrust_key_id(key), key, tuple(sorted(allowed)))

    def jwk(self) -> dict[str, Any]:
        """The public JWK (RFC 7517), for publishing in a JWKS."""
        if isinstance(self.key, ec.EllipticCurvePublicKey):
            fields = ECAlgorithm.to_jwk(self.key, as_dict=True)
        else:
            fields = RSAAlgorithm.to_jwk(self.key, as_dict=True)
        fields.pop("key_ops", None)  # "use" says it (RFC 7517 4.3: not both)
        return {**fields, "kid": self.kid, "alg": self.algorithms[0], "use": "sig"}


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The private key the token service signs with."""

    key: PrivateKeyType
    public: VerifyingKey

    @property
    def kid(self) -> str:
        return self.public.kid

    @property
    def algorithm(self) -> str:
        """ES256 (or ES384/ES512 by curve) for EC keys, RS256 for RSA keys."""
        return self.public.algorithms[0]

    @classmethod
    def of(cls, key: PrivateKeyType) -> SigningKey:
        public = key.public_key()
        return cls(key, VerifyingKey.of(public))


def load_signing_key(path: str | Path, what: str = "token signing key") -> SigningKey:
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot load the {what} {path}: {exc}") from None
    return parse_signing_key(pem, str(path), what)


def generate_signing_key(key_path: Path, cert_path: Path, algorithm: str = "ES256", name: str = "cargohold") -> None:
    """Write a new private key (mode 0600) and a self-signed certificate for it (for ``rootcertbundle``).

    Raises FileExistsError if ``key_path`` exists.
    """
    private = _write_new_key(key_path, algorithm)
    cert_path.write_bytes(self_signed_certificate(private, name).public_bytes(serialization.Encoding.PEM))


def new_private_key(algorithm: str = "ES256") -> PrivateKeyType:
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    raise KeyFileError(f"cannot generate {algorithm} keys (ES256 or RS256)")


def private_pem(key: PrivateKeyType) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def parse_signing_key(pem: bytes, where: str, what: str = "token signing key") -> SigningKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"cannot load the {what} {where}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise KeyFileError(f"{where}: the {what} must be EC (P-256) or RSA")
    return SigningKey.of(key)


def _write_new_key(key_path: Path, algorithm: str) -> PrivateKeyType:
    """Generate a key and write it (mode 0600); FileExistsError if ``key_path`` exists."""
    private = new_private_key(algorithm)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    pem = private_pem(private)
    partial = key_path.with_name(f".{key_path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    try:
        os.link(partial, key_path)  # atomic, and refuses to replace a key another process made
    finally:
        os.unlink(partial)
    return private


def ensure_private_key(key_path: Path, what: str, algorithm: str = "ES256") -> PrivateKeyType:
    """Load a PEM private key (EC or RSA), generating it on first use; every process gets the same one."""
    if not key_path.exists():
        with contextlib.suppress(FileExistsError):  # another process made it first
            _write_new_key(key_path, algorithm)
    return load_signing_key(key_path, what).key


def self_signed_certificate(private: PrivateKeyType, name: str) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} token signing")])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=False, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .sign(private, hashes.SHA256())
    )


def ensure_signing_key(key_path: Path, cert_path: Path, algorithm: str = "ES256") -> SigningKey:
    """Load the token key, generating it (and its certificate) on first use."""
    if not key_path.exists():
        with contextlib.suppress(FileExistsError):  # another process made it first
            generate_signing_key(key_path, cert_path, algorithm)
    signing = load_signing_key(key_path)
    write_certificate(signing, cert_path)
    return signing


def write_certificate(signing: SigningKey, cert_path: Path) -> None:
    """The key's self-signed certificate at ``cert_path``, unless the one there is already for this key."""
    try:
        current = load_public_keys(cert_path)[0].kid if cert_path.exists() else None
    except KeyFileError:
        current = None
    if current != signing.kid:  # missing, or left from another key
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        partial = cert_path.with_name(f".{cert_path.name}.{os.getpid()}")
        partial.write_bytes(self_signed_certificate(signing.key, "cargohold").public_bytes(serialization.Encoding.PEM))
        os.replace(partial, cert_path)


def load_public_keys(path: str | Path) -> list[VerifyingKey]:
    """Every public key in a PEM file of certificates and/or ``PUBLIC KEY`` blocks."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc}") from None
    found: list[VerifyingKey] = []
    for block in data.split(b"-----END ")[:-1]:
        start = block.find(b"-----BEGIN ")
        if start < 0:
            continue
        kind = block[start + 11:block.find(b"-----", start + 11)]
        pem = block[start:] + b"-----END " + kind + b"-----\n"
        try:
            if kind == b"CERTIFICATE":
                key: Any = x509.load_pem_x509_certificate(pem).public_key()
            elif kind == b"PUBLIC KEY":
                key = serialization.load_pem_public_key(pem)
            else:
                continue
        except ValueError as exc:
            raise KeyFileError(f"{path}: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise KeyFileError(f"{path}: only EC and RSA keys can verify tokens")
        found.append(VerifyingKey.of(key))
    if not found:
        raise KeyFileError(f"{path} holds no certificate or public key")
    return found


def parse_jwk(jwk: Mapping[str, Any]) -> VerifyingKey:
    alg = jwk.get("alg")
    if alg is not None and alg not in ALLOWED_ALGORITHMS:
        raise KeyFileError(f"JWK algorithm {alg!r} is not allowed")
    try:
        key = PyJWK(dict(jwk)).key
    except PyJWTError as exc:
        raise KeyFileError(f"malformed or unsupported JWK: {exc}") from None
    kid = jwk.get("kid")
    return VerifyingKey.of(key, kid if isinstance(kid, str) else None, alg)


def parse_jwks(document: Mapping[str, Any] | str | bytes) -> list[VerifyingKey]:
    """The signing keys of a JWKS (``{"keys": [...]}``); encryption keys are skipped."""
    try:
        data = jsontext.loads(document) if isinstance(document, str | bytes) else document
    except ValueError as exc:
        raise KeyFileError(f"the JWKS is not JSON: {exc}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("keys"), list):
        raise KeyFileError("a JWKS is an object with a list of keys")
    return [parse_jwk(jwk) for jwk in data["keys"] if isinstance(jwk, Mapping) and jwk.get("use", "sig") == "sig"]


def jwks(keys: Iterable[VerifyingKey]) -> dict[str, Any]:
    return {"keys": [key.jwk() for key in keys]}
