"""Blob stores by driver name (``storage.driver``), each given its section's options.

A new driver is a new entry in :data:`DRIVERS` (and its options section in ``config.StorageSection``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .driver import BlobStore, StorageError


def _filesystem(options: Mapping[str, Any]) -> BlobStore:
    from .filesystem import FilesystemBlobStore

    return FilesystemBlobStore(str(options["root"]))


def _memory(options: Mapping[str, Any]) -> BlobStore:
    from .memory import MemoryBlobStore

    return MemoryBlobStore()


#: driver name -> opener(options)
DRIVERS: dict[str, Callable[[Mapping[str, Any]], BlobStore]] = {
    "filesystem": _filesystem,
    #: lost on exit, one store per process (so one worker only: ``config.ServerConfig``)
    "memory": _memory,
}


def open_blob_store(driver: str, options: Mapping[str, Any]) -> BlobStore:
    opener = DRIVERS.get(driver)
    if opener is None:
        raise StorageError(f"unknown blob storage driver {driver!r} (storage.driver: {', '.join(DRIVERS)})")
    return opener(options)
