"""Registry rules over storage and metadata: what the HTTP API calls.

Raises :class:`cargohold.errcodes.RegistryError` subclasses only; knows nothing
of HTTP.
"""

from .registry import BlobBody, Registry, RegistryOptions

__all__ = ["BlobBody", "Registry", "RegistryOptions"]
