"""Blob and upload bytes: content-addressed, streamed, hashed once.

Metadata (which repository may see which blob, sizes, upload offsets) lives in
:mod:`cargohold.metadata`; this package only keeps bytes.
"""

from .driver import (
    DURABLE,
    BlobStore,
    BlobWriter,
    LocalFileServer,
    Redirector,
    StorageError,
    Sweeper,
    UploadMissing,
    UploadReader,
    Written,
)
from .factory import open_blob_store
from .hashing import ResumableHasher, UnreadableHashState

__all__ = [
    "DURABLE",
    "BlobStore",
    "BlobWriter",
    "LocalFileServer",
    "Redirector",
    "ResumableHasher",
    "StorageError",
    "Sweeper",
    "UnreadableHashState",
    "UploadMissing",
    "UploadReader",
    "Written",
    "open_blob_store",
]
