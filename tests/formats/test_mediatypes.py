"""Media type constants and the predicates the registry branches on."""

from __future__ import annotations

import pytest

from cargohold.formats import (
    MANIFEST_MEDIA_TYPES,
    MediaType,
    is_image_manifest,
    is_index,
    is_layer,
    is_non_distributable,
    is_schema1,
)


def test_media_types_are_their_wire_strings() -> None:
    pairs: list[tuple[MediaType, str]] = [
        (MediaType.OCI_MANIFEST, "application/vnd.oci.image.manifest.v1+json"),
        (MediaType.DOCKER_SCHEMA1_SIGNED, "application/vnd.docker.distribution.manifest.v1+prettyjws"),
        (MediaType.DOCKER_FOREIGN_LAYER, "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
        (MediaType.OCI_EMPTY, "application/vnd.oci.empty.v1+json"),
    ]
    for member, text in pairs:
        assert member == text
        assert f"{member}" == text
        assert hash(member) == hash(text)


def test_manifest_media_types_are_the_six_manifest_kinds() -> None:
    assert set(MANIFEST_MEDIA_TYPES) == {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }


# media type -> (is_index, is_image_manifest, is_schema1, is_layer, is_non_distributable)
CLASSIFICATION = {
    MediaType.OCI_MANIFEST: (False, True, False, False, False),
    MediaType.OCI_INDEX: (True, False, False, False, False),
    MediaType.DOCKER_MANIFEST: (False, True, False, False, False),
    MediaType.DOCKER_MANIFEST_LIST: (True, False, False, False, False),
    MediaType.DOCKER_SCHEMA1: (False, False, True, False, False),
    MediaType.DOCKER_SCHEMA1_SIGNED: (False, False, True, False, False),
    MediaType.OCI_CONFIG: (False, False, False, False, False),
    MediaType.OCI_EMPTY: (False, False, False, False, False),
    MediaType.DOCKER_CONFIG: (False, False, False, False, False),
    MediaType.OCI_LAYER: (False, False, False, True, False),
    MediaType.OCI_LAYER_GZIP: (False, False, False, True, False),
    MediaType.OCI_LAYER_ZSTD: (False, False, False, True, False),
    MediaType.OCI_LAYER_NONDISTRIBUTABLE: (False, False, False, True, True),
    MediaType.OCI_LAYER_NONDISTRIBUTABLE_GZIP: (False, False, False, True, True),
    MediaType.OCI_LAYER_NONDISTRIBUTABLE_ZSTD: (False, False, False, True, True),
    MediaType.DOCKER_LAYER: (False, False, False, True, False),
    MediaType.DOCKER_FOREIGN_LAYER: (False, False, False, True, True),
}


def test_every_media_type_is_classified() -> None:
    assert set(CLASSIFICATION) == set(MediaType)


@pytest.mark.parametrize("media_type", list(CLASSIFICATION))
def test_predicates(media_type: MediaType) -> None:
    # plain strings, as they arrive from headers and JSON
    text = media_type.value
    got = (
        is_index(text),
        is_image_manifest(text),
        is_schema1(text),
        is_layer(text),
        is_non_distributable(text),
    )
    assert got == CLASSIFICATION[media_type]


def test_unknown_media_types_are_nothing() -> None:
    for predicate in (is_index, is_image_manifest, is_schema1, is_layer, is_non_distributable):
        assert not predicate("application/vnd.example.thing+json")
