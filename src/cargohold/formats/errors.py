"""Why a manifest was refused.

The server maps these onto spec codes in one place; the format package only
says what is wrong and where (``layers[2].digest: ...``).

Exception tree::

    ValueError
    └── ManifestError              -> MANIFEST_INVALID
        └── ManifestSignatureError -> MANIFEST_UNVERIFIED
"""

from __future__ import annotations


class ManifestError(ValueError):
    """The bytes are not a well-formed manifest of a supported media type."""


class ManifestSignatureError(ManifestError):
    """A schema 1 manifest's JWS signatures are missing, malformed or do not verify."""
