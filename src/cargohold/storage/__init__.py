"""Blob and upload bytes: content-addressed, streamed, hashed once.

Metadata (which repository may see which blob, sizes, upload offsets) lives in
:mod:`cargohold.metadata`; this package only keeps bytes.
"""

from .driver import BlobStore, BlobWriter, LocalFileServer, Redirector, StorageError, UploadMissing
from .factory import open_blob_store
from .hashing import ResumableHasher

__all__ = [
    "BlobStore",
    "BlobWriter",
    "LocalFileServer",
    "Redirector",
    "ResumableHasher",
    "StorageError",
    "UploadMissing",
    "open_blob_store",
]
