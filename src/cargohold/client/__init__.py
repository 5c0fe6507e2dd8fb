"""cargohold's registry client: a typed library over the OCI Distribution API.

One entry point, :class:`RegistryClient`; verbs over it in :mod:`.image`
(inspect, platforms, check), :mod:`.pull` (pull, push), :mod:`.copy` (copy,
sync), :mod:`.ops` (tag, delete), :mod:`.append` (append) and :mod:`.flatten`
(flatten, export; layers applied by :mod:`.apply`)::

    from cargohold.client import RegistryClient, Reference, pull, OCILayout

    with RegistryClient() as client:
        ref = Reference.parse("localhost:5000/team/app:1.0")
        print(client.tags(ref))
        pull(client, ref, OCILayout("app-layout"), tag="1.0")

Failures are :class:`ClientError` subclasses; a registry's error answer is a
:class:`RegistryResponseError` that is also the spec's exception class
(``cargohold.errcodes.ManifestUnknown``...), see :mod:`.errors`.
"""

from __future__ import annotations

from ..reference import Reference, ReferenceError
from .auth import RegistryAuth, TokenCache
from .cache import BlobCache
from .errors import (
    AuthError,
    ClientError,
    CredentialHelperError,
    DigestMismatch,
    LayoutError,
    PlatformNotFound,
    RegistryResponseError,
    SizeMismatch,
    TLSError,
    TransportError,
    UnsupportedOperation,
)
from .image import CheckResult, ImageConfig, ImageInfo, check, inspect, platforms
from .keychain import Credentials, DockerConfig, Keychain, MultiKeychain, StaticKeychain
from .layout import OCILayout
from .pull import TransferResult, pull, push
from .registry import ManifestInfo, RawManifest, RegistryClient, TagInfo
from .transport import TransportOptions

__all__ = [
    "AuthError",
    "BlobCache",
    "CheckResult",
    "ClientError",
    "CredentialHelperError",
    "Credentials",
    "DigestMismatch",
    "DockerConfig",
    "ImageConfig",
    "ImageInfo",
    "Keychain",
    "LayoutError",
    "ManifestInfo",
    "MultiKeychain",
    "OCILayout",
    "PlatformNotFound",
    "RawManifest",
    "Reference",
    "ReferenceError",
    "RegistryAuth",
    "RegistryClient",
    "RegistryResponseError",
    "SizeMismatch",
    "StaticKeychain",
    "TLSError",
    "TagInfo",
    "TokenCache",
    "TransferResult",
    "TransportError",
    "TransportOptions",
    "UnsupportedOperation",
    "check",
    "inspect",
    "platforms",
    "pull",
    "push",
]
