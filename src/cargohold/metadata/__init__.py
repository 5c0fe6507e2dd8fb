"""Registry metadata in SQL: repositories, blob links, manifests, tags, uploads."""

from .factory import open_login_failures, open_metadata_store
from .logins import LoginFailureStore
from .schema import migrate
from .store import ManifestRecord, MetadataStore, ReferrerRecord, UploadRecord

__all__ = [
    "LoginFailureStore", "ManifestRecord", "MetadataStore", "ReferrerRecord", "UploadRecord", "migrate",
    "open_login_failures", "open_metadata_store",
]
