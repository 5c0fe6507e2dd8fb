"""Manifest references are read once into a tag or a digest; the size limit is checked in Manifests.put alone."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from cargohold.digest import Digest, DigestError
from cargohold.errcodes import DigestInvalid, ManifestTooLarge, NameUnknown
from cargohold.metadata import migrate, open_metadata_store
from cargohold.reference import DigestRef, TagRef, manifest_reference
from cargohold.service import Registry, RegistryOptions, parse_reference
from cargohold.storage import open_blob_store

DIGEST = "sha256:" + hashlib.sha256(b"x").hexdigest()


def test_a_reference_is_a_tag_or_a_digest() -> None:
    assert manifest_reference("v1.0") == TagRef("v1.0")
    assert manifest_reference(DIGEST) == DigestRef(Digest.parse(DIGEST))
    # not checked against the tag grammar: a lookup of it finds nothing, a push of it is TAG_INVALID
    assert manifest_reference("-bad") == TagRef("-bad")
    with pytest.raises(DigestError):
        manifest_reference("sha256:abc")
    with pytest.raises(DigestInvalid):
        parse_reference("sha256:ABC")
    assert str(parse_reference(DIGEST)) == DIGEST and str(parse_reference("latest")) == "latest"


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    migrate(f"sqlite://{tmp_path / 'm.db'}")
    meta = open_metadata_store(f"sqlite://{tmp_path / 'm.db'}")
    blobs = open_blob_store("filesystem", {"root": str(tmp_path / "blobs")})
    return Registry(blobs, meta, RegistryOptions(max_manifest_size=100))


def test_the_size_limit_is_checked_before_the_body_is_read(registry: Registry) -> None:
    reads: list[int] = []

    async def read(limit: int) -> bytes | None:
        reads.append(limit)
        return None

    async def push(declared: int | None) -> None:
        await registry.put_manifest("a/b", TagRef("v1"), None, declared, read)

    with pytest.raises(ManifestTooLarge):
        asyncio.run(push(101))
    assert reads == []  # a declared length over the limit: the body is not read
    with pytest.raises(ManifestTooLarge):
        asyncio.run(push(None))
    assert reads == [100]  # undeclared: read up to the limit, and refused past it


def test_a_manifest_of_an_unknown_repository_is_name_unknown(registry: Registry) -> None:
    with pytest.raises(NameUnknown):
        asyncio.run(registry.get_manifest("no/such", TagRef("v1"), lambda media_type: True))
