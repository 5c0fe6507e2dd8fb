"""Metadata stores by the scheme of their URL (``database.url``): ``sqlite:///path/to/file.db``.

A new database is a new entry in :data:`DATABASES`.
"""

from __future__ import annotations

from collections.abc import Callable

from .store import MetadataError, MetadataStore


def _sqlite(url: str) -> MetadataStore:
    from .sqlite import SqliteMetadataStore

    return SqliteMetadataStore(url.removeprefix("sqlite://"))


#: URL scheme -> opener(url)
DATABASES: dict[str, Callable[[str], MetadataStore]] = {
    "sqlite": _sqlite,
}


def open_metadata_store(url: str) -> MetadataStore:
    scheme, sep, _ = url.partition("://")
    opener = DATABASES.get(scheme) if sep else None
    if opener is None:
        raise MetadataError(f"unsupported metadata database URL {url!r}")
    return opener(url)
