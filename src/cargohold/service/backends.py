"""The backends' own failures, as the API tells them from a refused request, and their readiness."""

from __future__ import annotations

from typing import Final

from ..metadata.store import MetadataError, MetadataStore
from ..storage.driver import BlobStore, StorageError

#: failures of the database or the blob store (not of the request): a 500 for the caller, an error in the log
BACKEND_ERRORS: Final = (StorageError, MetadataError)


async def failed_checks(meta: MetadataStore, blobs: BlobStore, *, writable: bool) -> dict[str, str]:
    """Which backend ("database", "blobs") fails its check, and why; empty when both can serve."""
    failed: dict[str, str] = {}
    try:
        await meta.check()
    except (MetadataError, OSError) as exc:
        failed["database"] = str(exc)
    try:
        await blobs.check(writable=writable)
    except (StorageError, OSError) as exc:
        failed["blobs"] = str(exc)
    return failed
