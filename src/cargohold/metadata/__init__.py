"""Registry metadata in SQL: repositories, blob links, manifests, tags, uploads."""

from .factory import open_metadata_store
from .schema import migrate
from .store import ManifestRecord, MetadataStore, ReferrerRecord, UploadRecord

__all__ = ["ManifestRecord", "MetadataStore", "ReferrerRecord", "UploadRecord", "migrate", "open_metadata_store"]
