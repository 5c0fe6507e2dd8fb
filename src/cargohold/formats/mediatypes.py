"""The media types a registry has to tell apart, and predicates over them.

The predicates take plain strings because media types arrive as strings
(``Content-Type`` headers, ``mediaType`` fields) and unknown ones are legal in
descriptors: an artifact's config or layers may have any media type at all.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class MediaType(StrEnum):
    """Media types from the OCI image spec and Docker's image manifest specs."""

    # manifests
    OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    OCI_INDEX = "application/vnd.oci.image.index.v1+json"
    DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
    DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
    DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
    # configs
    OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
    OCI_EMPTY = "application/vnd.oci.empty.v1+json"
    DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
    # layers
    OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
    OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
    OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
    OCI_LAYER_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"
    OCI_LAYER_NONDISTRIBUTABLE_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    OCI_LAYER_NONDISTRIBUTABLE_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
    DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"


#: Every manifest media type the registry accepts on push.
MANIFEST_MEDIA_TYPES: Final[frozenset[str]] = frozenset(
    {
        MediaType.OCI_MANIFEST,
        MediaType.OCI_INDEX,
        MediaType.DOCKER_MANIFEST,
        MediaType.DOCKER_MANIFEST_LIST,
        MediaType.DOCKER_SCHEMA1,
        MediaType.DOCKER_SCHEMA1_SIGNED,
    }
)

_INDEX_TYPES: Final = frozenset({MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST_LIST})
_IMAGE_TYPES: Final = frozenset({MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST})
_SCHEMA1_TYPES: Final = frozenset({MediaType.DOCKER_SCHEMA1, MediaType.DOCKER_SCHEMA1_SIGNED})
_NON_DISTRIBUTABLE_TYPES: Final = frozenset(
    {
        MediaType.OCI_LAYER_NONDISTRIBUTABLE,
        MediaType.OCI_LAYER_NONDISTRIBUTABLE_GZIP,
        MediaType.OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
        MediaType.DOCKER_FOREIGN_LAYER,
    }
)
_LAYER_TYPES: Final = _NON_DISTRIBUTABLE_TYPES | {
    MediaType.OCI_LAYER,
    MediaType.OCI_LAYER_GZIP,
    MediaType.OCI_LAYER_ZSTD,
    MediaType.DOCKER_LAYER,
}


def is_index(media_type: str) -> bool:
    """An OCI image index or a Docker manifest list: a manifest of manifests."""
    return media_type in _INDEX_TYPES


def is_image_manifest(media_type: str) -> bool:
    """An OCI or Docker schema 2 manifest: one config plus layers.

    Schema 1 is deliberately not included; it has no config and lists its
    layers as ``fsLayers`` (see :func:`is_schema1`).
    """
    return media_type in _IMAGE_TYPES


def is_schema1(media_type: str) -> bool:
    """A Docker image manifest v2 schema 1, signed or not."""
    return media_type in _SCHEMA1_TYPES


def is_layer(media_type: str) -> bool:
    """One of the registered OCI or Docker layer types (artifacts may use others)."""
    return media_type in _LAYER_TYPES


def is_non_distributable(media_type: str) -> bool:
    """A layer that clients fetch from its ``urls``, never from the registry.

    The registry neither requires such a blob to be present when a manifest
    refers to it nor serves it.
    """
    return media_type in _NON_DISTRIBUTABLE_TYPES
