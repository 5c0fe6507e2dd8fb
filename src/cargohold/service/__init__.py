"""Registry rules over storage and metadata: what the HTTP API calls.

Raises :class:`cargohold.errcodes.RegistryError` subclasses, and the backends'
own failures (:data:`BACKEND_ERRORS`); knows nothing of HTTP. The records it
returns are the metadata store's, re-exported here so that the API reads them
without reaching into the store.
"""

from ..metadata.store import ManifestRecord, ReferrerRecord
from .backends import BACKEND_ERRORS, failed_checks
from .registry import BlobBody, Registry, RegistryOptions

__all__ = [
    "BACKEND_ERRORS", "BlobBody", "ManifestRecord", "ReferrerRecord", "Registry", "RegistryOptions", "failed_checks",
]
