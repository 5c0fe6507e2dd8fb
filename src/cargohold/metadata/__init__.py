"""Registry metadata in SQL: repositories, blob links, manifests, tags, uploads."""

from .factory import open_metadata_store
from .store import ManifestRecord, MetadataStore, ReferrerRecord, UploadRecord

__all__ = ["ManifestRecord", "MetadataStore", "ReferrerRecord", "UploadRecord", "open_metadata_store"]
