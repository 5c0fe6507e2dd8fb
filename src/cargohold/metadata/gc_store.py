"""What garbage collection (:mod:`cargohold.service.gc`) needs of the metadata store, beyond the registry's
queries: its review queues, the rows it reads under lock, the deletions it makes, and the record of runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ObjectDeletion:
    """Bytes of a collected blob still to delete: by object key, or (``key`` None) at the digest's address."""

    id: int
    digest: str
    key: str | None
    size: int


@dataclass(slots=True)
class GcRunRecord:
    id: int
    started: float
    finished: float | None
    dry_run: bool
    manifests: int = 0
    blobs: int = 0
    bytes_freed: int = 0
    errors: int = 0
    #: what the run deleted (or would have), per repository, and its errors
    detail: dict[str, Any] = field(default_factory=dict)


class GcQueries(Protocol):
    """Every method joins the open unit of work, if any; ``lock``/``claim`` lock the rows read until it ends."""

    async def gc_due_manifests(
        self, cutoff: int, after: tuple[int, str], limit: int, claim: bool) -> list[tuple[int, str]]:
        """Review rows queued at or before ``cutoff``, after ``after`` in (repository id, digest) order."""
        ...

    async def gc_claim_manifest(self, repository_id: int, digest: str, cutoff: int) -> bool:
        """Lock one due review row until the unit of work ends; False if it is gone, not due or held."""
        ...

    async def gc_due_blobs(self, cutoff: int, after: str, limit: int, claim: bool) -> list[str]: ...

    async def gc_manifest_subject(self, repository_id: int, digest: str, lock: bool) -> tuple[bool | None, str | None]:
        """(whether the manifest is stored, None while another transaction holds it locked; its subject)."""
        ...

    async def gc_is_tagged(self, repository_id: int, digest: str) -> bool: ...
    async def gc_referencing(self, repository_id: int, digest: str) -> list[str]: ...
    async def gc_referencing_anywhere(self, digest: str) -> list[tuple[int, str]]: ...
    async def gc_generated_sources(self, repository_id: int) -> list[str]: ...
    async def gc_unreferenced_by(self, repository_id: int, digest: str) -> tuple[list[str], list[str]]: ...
    async def gc_committing(self, digest: str) -> bool: ...
    async def gc_blob_links(self, digest: str, lock: bool) -> tuple[int | None, list[int]]: ...
    async def gc_repository_names(self, ids: list[int]) -> dict[int, str]: ...
    async def gc_delete_manifest(self, repository_id: int, digest: str, now: int) -> None:
        """Delete a manifest (tags, references, generated manifests) and queue what it leaves to review."""
        ...

    async def gc_drop_link(self, repository_id: int, digest: str) -> None: ...
    async def gc_delete_blob(self, digest: str, size: int, now: int) -> None: ...
    async def gc_reviewed_manifest(self, repository_id: int, digest: str, requeue_at: int | None = None) -> None:
        """Drop the review row, or move it to ``requeue_at``."""
        ...

    async def gc_reviewed_blob(self, digest: str, requeue_at: int | None = None) -> None:
        """Drop the review row, or move it to ``requeue_at``."""
        ...

    async def gc_object_deletions(self, keyed: bool, after: int, limit: int, claim: bool) -> list[ObjectDeletion]: ...
    async def gc_objects_deleted(self, ids: list[int]) -> None: ...
    async def gc_object_failed(self, deletion_id: int, error: str) -> None: ...
    async def gc_start_run(self, started: float, dry_run: bool) -> int: ...
    async def gc_finish_run(self, run: GcRunRecord) -> None: ...
    async def gc_runs(self, limit: int) -> list[GcRunRecord]: ...
