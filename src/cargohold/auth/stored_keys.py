"""The keys a registry signs with: configured files, or keys it made once and keeps in its database.

Replicas share the database, not disks, so a key that is not configured lives in the database
(:mod:`cargohold.metadata.signing_keys`) and every replica and worker signs with the same one.
A registry from before keys lived there offers the key file it generated in ``<data_dir>/auth``,
so an upgrade keeps its key (and the tokens signed with it).
"""

from __future__ import annotations

from pathlib import Path

from ..config import ServerConfig
from ..metadata.signing_keys import keep_first_key, stored_key
from .keys import (
    KeyFileError,
    PrivateKeyType,
    SigningKey,
    ensure_private_key,
    ensure_signing_key,
    load_signing_key,
    new_private_key,
    parse_signing_key,
    private_pem,
    write_certificate,
)

TOKEN_KEY = "token"
SCHEMA1_KEY = "schema1"


def stored_signing_key(url: str, name: str, earlier: Path, what: str) -> SigningKey:
    """The key kept under ``name`` in the (migrated) database at ``url``, made by the first process that asks."""
    offered = load_signing_key(earlier, what) if earlier.exists() else SigningKey.of(new_private_key())
    pem = keep_first_key(url, name, private_pem(offered.key).decode("ascii"))
    return parse_signing_key(pem.encode("ascii"), f"(the {name} key in the database)", what)


def token_signing_key(config: ServerConfig) -> SigningKey:
    """The token key (``auth.token_key``, or the database's); its certificate is written for Distribution-style
    verifiers (``auth.token.rootcertbundle``)."""
    if config.auth.token_key:
        return ensure_signing_key(Path(config.auth.token_key), Path(config.token_cert_path))
    key = stored_signing_key(config.metadata_url, TOKEN_KEY, Path(config.token_key_path), "token signing key")
    write_certificate(key, Path(config.token_cert_path))
    return key


def schema1_signing_key(config: ServerConfig) -> PrivateKeyType:
    """The key generated schema 1 manifests are signed with (``compatibility.schema1.signingkeyfile``, or the
    database's)."""
    if config.compatibility.schema1.signingkeyfile:
        return ensure_private_key(Path(config.schema1_key_path), "schema 1 signing key")
    return stored_signing_key(config.metadata_url, SCHEMA1_KEY, Path(config.schema1_key_path),
                              "schema 1 signing key").key


def current_token_key(config: ServerConfig) -> SigningKey:
    """The token key the server signs with, without making one (for ``cargohold admin token-key``)."""
    if config.auth.token_key:
        return load_signing_key(config.auth.token_key)
    pem = stored_key(config.metadata_url, TOKEN_KEY)
    if pem is None:
        raise KeyFileError("cannot load the token signing key: the server makes it when it first starts"
                           " with --auth token")
    return parse_signing_key(pem.encode("ascii"), f"(the {TOKEN_KEY} key in the database)")


def token_key_source(config: ServerConfig) -> str:
    """Where the token key comes from, as ``serve`` and ``admin token-key`` print it."""
    return config.auth.token_key or f"the metadata database (table signing_keys, {TOKEN_KEY!r})"


__all__ = ["current_token_key", "schema1_signing_key", "stored_signing_key", "token_key_source", "token_signing_key"]
