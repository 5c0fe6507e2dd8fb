"""Blob stores by name, from configuration."""

from __future__ import annotations

from typing import Any

from .driver import BlobStore, StorageError


def open_blob_store(kind: str, options: dict[str, Any]) -> BlobStore:
    if kind == "filesystem":
        from .filesystem import FilesystemBlobStore

        return FilesystemBlobStore(str(options["root"]))
    raise StorageError(f"unknown blob storage driver {kind!r}")
