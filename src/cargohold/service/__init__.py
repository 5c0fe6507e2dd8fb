"""Registry rules over storage and metadata: what the HTTP API calls.

The API sees only :class:`RegistryService` and the values it returns;
:class:`Registry` implements it over the stores, one part per noun (blobs,
uploads, manifests, tags, catalog, referrers). Raises
:class:`cargohold.errcodes.RegistryError` subclasses, and the backends' own
failures (:data:`BACKEND_ERRORS`); knows nothing of HTTP.
"""

from .accepts import Accepts, parse_accepts
from .backends import BACKEND_ERRORS
from .blobs import BlobBody
from .common import RegistryOptions, parse_algorithm, parse_reference
from .manifests import ManifestContent, StoredManifest, media_type_warning
from .protocol import RegistryService
from .registry import Registry

__all__ = [
    "Accepts", "BACKEND_ERRORS", "BlobBody", "ManifestContent", "Registry", "RegistryOptions", "RegistryService",
    "StoredManifest", "media_type_warning", "parse_accepts", "parse_algorithm",
    "parse_reference",
]
