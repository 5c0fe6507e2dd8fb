"""The backends' own failures, as the API tells them from a refused request, and their readiness."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ..metadata.store import MetadataError
from ..storage.driver import StorageError

if TYPE_CHECKING:
    from .registry import Registry

#: failures of the database or the blob store (not of the request): a 500 for the caller, an error in the log
BACKEND_ERRORS: Final = (StorageError, MetadataError)


async def failed_checks(registry: Registry) -> dict[str, str]:
    """Which backend ("database", "blobs") fails its check, and why; empty when both can serve."""
    failed: dict[str, str] = {}
    try:
        await registry.meta.check()
    except (MetadataError, OSError) as exc:
        failed["database"] = str(exc)
    try:
        await registry.blobs.check(writable=not registry.options.read_only)
    except (StorageError, OSError) as exc:
        failed["blobs"] = str(exc)
    return failed
