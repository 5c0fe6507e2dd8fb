"""Blob stores by driver name (``storage.driver``), each given its section's options.

A new driver is a new entry in :data:`DRIVERS` (and its options section in ``config.StorageSection``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .driver import BlobStore, StorageError

if TYPE_CHECKING:
    from ..metadata.store import MetadataStore


def _filesystem(options: Mapping[str, Any], state: MetadataStore | None) -> BlobStore:
    from .filesystem import FilesystemBlobStore

    return FilesystemBlobStore(str(options["root"]), state,
                               float(options.get("orphan_grace_seconds", 24 * 3600)))


def _memory(options: Mapping[str, Any], state: MetadataStore | None) -> BlobStore:
    from .memory import MemoryBlobStore

    return MemoryBlobStore()


def _s3(options: Mapping[str, Any], state: MetadataStore | None) -> BlobStore:
    from .s3 import S3BlobStore

    if state is None:
        raise StorageError("the s3 blob store keeps its upload state in the metadata database, and has none")
    return S3BlobStore(options, state)


#: driver name -> opener(options)
DRIVERS: dict[str, Callable[[Mapping[str, Any], MetadataStore | None], BlobStore]] = {
    "filesystem": _filesystem,
    #: lost on exit, one store per process (so one worker only: ``config.ServerConfig``)
    "memory": _memory,
    #: an S3-compatible bucket; upload state in the metadata database (``state``)
    "s3": _s3,
}


def open_blob_store(driver: str, options: Mapping[str, Any], state: MetadataStore | None = None) -> BlobStore:
    """The store; ``state`` is the metadata database, for a store that keeps its upload state there."""
    opener = DRIVERS.get(driver)
    if opener is None:
        raise StorageError(f"unknown blob storage driver {driver!r} (storage.driver: {', '.join(DRIVERS)})")
    return opener(options, state)
