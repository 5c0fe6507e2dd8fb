"""Metadata stores by URL: ``sqlite:///path/to/file.db``."""

from __future__ import annotations

from .store import MetadataError, MetadataStore


def open_metadata_store(url: str) -> MetadataStore:
    if url.startswith("sqlite://"):
        from .sqlite import SqliteMetadataStore

        return SqliteMetadataStore(url.removeprefix("sqlite://"))
    raise MetadataError(f"unsupported metadata database URL {url!r}")
