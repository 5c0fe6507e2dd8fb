"""Pure manifest formats: bytes plus a media type in, frozen typed views out.

No I/O. Parsing never re-serializes: a :class:`Manifest` keeps the exact
bytes it was given, and its digest is computed from them. Schema 1 signing
and verification live in :mod:`.schema1`, imported by whoever needs them
(it loads ``cryptography``).
"""

from __future__ import annotations

from .descriptor import Descriptor, Platform
from .errors import ManifestError, ManifestSignatureError
from .manifest import Manifest, parse_manifest
from .mediatypes import (
    MANIFEST_MEDIA_TYPES,
    MediaType,
    is_image_manifest,
    is_index,
    is_layer,
    is_non_distributable,
    is_schema1,
)

__all__ = [
    "Descriptor",
    "MANIFEST_MEDIA_TYPES",
    "Manifest",
    "ManifestError",
    "ManifestSignatureError",
    "MediaType",
    "Platform",
    "is_image_manifest",
    "is_index",
    "is_layer",
    "is_non_distributable",
    "is_schema1",
    "parse_manifest",
]
