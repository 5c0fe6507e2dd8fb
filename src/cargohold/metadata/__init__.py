"""Registry metadata in SQL: repositories, blob links, manifests, tags, uploads; and, beside it,
the access model (:mod:`.access`) and the failed-login counters (:mod:`.logins`)."""

from .access import AccessQueries, AccessStore
from .factory import open_access_store, open_login_failures, open_metadata_store
from .logins import LoginFailureStore
from .schema import migrate
from .store import ManifestRecord, MetadataStore, ReferrerRecord, UploadRecord

__all__ = [
    "AccessQueries", "AccessStore", "LoginFailureStore", "ManifestRecord", "MetadataStore", "ReferrerRecord",
    "UploadRecord", "migrate", "open_access_store", "open_login_failures", "open_metadata_store",
]
