"""The metadata contract every SQL backend implements, and its row types.

Methods are ``async`` so that a networked database (PostgreSQL) fits the same
shape; SQLite answers them inline, which is faster than a thread hop for its
sub-millisecond queries.

A unit of work runs in ``async with meta.transaction() as tx:``: every ``tx``
call commits together, or none does if the block raises. Methods documented as
atomic on their own (``put_manifest``, ``add_blob``, ...) join an open
transaction. Transactions do not nest: opening one inside another is a
MetadataError (a unit of work that needs a smaller one is a design error).
The block awaits only ``tx``'s methods: SQLite runs them inline on one
connection, so anything else that yields to the event loop would let other
requests' statements run inside it (the SQLite store refuses them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from ..events.audit import AuditLog
from ..events.log import EventLog
from ..events.outbox import Outbox, RuntimeEndpoints
from ..immutable_tags import ImmutableRule
from ..mirror.model import MirrorRecords
from ..quotas import QuotaCharge
from ..scrub import ScrubRecords
from ..usage import UsageReport
from .gc_store import GcQueries


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    digest: str
    media_type: str
    content: bytes


@dataclass(frozen=True, slots=True)
class NewManifest:
    """Everything stored when a manifest is accepted."""

    digest: str
    media_type: str
    content: bytes
    artifact_type: str | None
    subject_digest: str | None
    annotations_json: str | None
    references: Sequence[str]


@dataclass(frozen=True, slots=True)
class ReferrerRecord:
    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    annotations_json: str | None


@dataclass(frozen=True, slots=True)
class UploadRecord:
    id: str
    repository: str
    size: int
    algorithm: str
    hash_state: bytes | None
    created_at: int
    updated_at: int
    #: set when the commit began: the bytes hashed to this digest and were on disk
    digest: str | None = None
    #: the blob was placed and recorded; the row only answers a retried final PUT
    completed: bool = False


@dataclass(frozen=True, slots=True)
class RetentionTag:
    name: str
    digest: str
    #: when the tag was last set (epoch seconds)
    pushed_at: int
    #: when its manifest was last pulled by a GET, as recorded so far; None: never
    pulled_at: int | None


@dataclass(frozen=True, slots=True)
class RetentionManifest:
    digest: str
    media_type: str
    pushed_at: int
    subject: str | None


@dataclass(frozen=True, slots=True)
class RetentionView:
    """One repository as retention reads it: tags and manifests in name order, and (index, child) pairs."""

    tags: list[RetentionTag]
    manifests: list[RetentionManifest]
    children: list[tuple[str, str]]


class MetadataError(Exception):
    """The metadata database failed or is not usable."""


class UploadConflict(MetadataError):
    """An upload's size changed under a concurrent request."""


@dataclass(frozen=True, slots=True)
class StorePart:
    """One part of a blob store's upload: its number (from its byte offset), the store's ETag, its size."""

    number: int
    etag: str
    size: int


@dataclass(frozen=True, slots=True)
class StoreUpload:
    """A blob store's own record of an upload session (an S3 multipart upload), in part number order."""

    session: str
    size: int
    parts: tuple[StorePart, ...]


class StoreState(Protocol):
    """What a blob store that keeps upload bytes remotely (S3) records in the database, so that every
    replica sees the same state: no local files and no listing of the object store. Each method is
    atomic on its own; the store calls them outside the service's transactions."""

    async def store_upload(self, upload_id: str) -> StoreUpload | None: ...

    async def save_store_upload(self, upload_id: str, session: str, size: int) -> None:
        """Create or update the session's row (its parts stay)."""
        ...

    async def save_store_part(self, upload_id: str, part: StorePart) -> None:
        """Record a part; a part of the same number is replaced (a retried request)."""
        ...

    async def delete_store_upload(self, upload_id: str) -> None:
        """Forget the session and its parts."""
        ...

    async def store_upload_ids(self) -> dict[str, float]:
        """Every recorded session, with when it last changed (epoch seconds)."""
        ...

    async def store_blob_key(self, digest: str) -> str | None:
        """The object a blob's bytes are in."""
        ...

    async def claim_store_blob_key(self, digest: str, key: str) -> str:
        """Record ``key`` for ``digest`` unless a key is recorded already; the key that stands."""
        ...

    async def delete_store_blob_key(self, digest: str) -> None: ...

    async def store_blob_keys(self) -> set[str]:
        """Every recorded blob's object (to find the objects nothing refers to)."""
        ...

    async def named_blobs(self, digests: Sequence[str]) -> set[str]:
        """Those of ``digests`` that an upload commit in flight or a blob row names (a store's bytes
        that neither names were left by a crash)."""
        ...


class MetadataQueries(EventLog, StoreState, GcQueries, Protocol):
    """What the store answers, on its own or inside a transaction (the event log too)."""

    # repositories
    async def repository_id(self, name: str) -> int | None: ...
    async def ensure_repository(self, name: str) -> int: ...
    async def list_repositories(self, limit: int | None, last: str | None) -> list[str]: ...

    # blobs
    async def blob_size(self, digest: str) -> int | None:
        """Size of a stored blob, in any repository."""
        ...

    async def linked_blob_size(self, repository: str, digest: str) -> int | None:
        """Size of a blob readable in ``repository``; ``None`` if not linked there."""
        ...

    async def add_blob(self, repository_id: int, digest: str, size: int) -> None:
        """Record a stored blob and link it into a repository."""
        ...

    async def link_blob(self, repository_id: int, digest: str) -> bool:
        """Link an already-stored blob (a mount); False if the blob is not stored."""
        ...

    async def repositories_with_blob(self, digest: str, limit: int | None, last: str | None) -> list[str]:
        """Names of the repositories a blob is linked in, in name order, after ``last``."""
        ...

    async def unlink_blob(self, repository_id: int, digest: str) -> bool: ...
    async def unlinked_blobs(self, repository_id: int, digests: Iterable[str]) -> set[str]: ...

    # manifests and tags
    async def manifest(self, repository: str, digest: str) -> ManifestRecord | None: ...
    async def tagged_manifest(self, repository: str, tag: str) -> ManifestRecord | None: ...
    async def missing_manifests(self, repository_id: int, digests: Iterable[str]) -> set[str]: ...
    async def put_manifest(self, repository_id: int, manifest: NewManifest, tags: Sequence[str]) -> None:
        """Store a manifest and point ``tags`` at it, all in one transaction."""
        ...

    async def delete_manifest(self, repository_id: int, digest: str) -> bool:
        """Delete a manifest, every tag pointing at it, every manifest generated from it and its pull time."""
        ...

    async def delete_tag(self, repository_id: int, tag: str, digest: str | None = None) -> bool:
        """Delete a tag (only while it names ``digest``, if given: a push that moved it meanwhile wins)."""
        ...
    async def tag_targets(self, repository_id: int, tags: Sequence[str]) -> dict[str, str]:
        """The digest each of ``tags`` points at now (tags that do not exist are left out)."""
        ...

    async def list_tags(self, repository: str, limit: int | None, last: str | None) -> list[str] | None:
        """A page of the repository's tags in order, after ``last``; None if there is no such repository."""
        ...

    async def manifest_tags(self, repository_id: int, digest: str) -> list[str]:
        """The tags pointing at a manifest, by name."""
        ...

    # retention
    async def retention_view(self, repository_id: int) -> RetentionView: ...
    async def is_listed(self, repository_id: int, digest: str) -> bool:
        """Whether a manifest of the repository (an index) lists ``digest``."""
        ...

    # immutable tag rules (changed through the access store)
    async def immutable_rules(self) -> list[ImmutableRule]:
        """Every rule, oldest first; a unit of work that enforces them reads them before anything else."""
        ...

    async def hold_locks(self, names: Iterable[str]) -> None:
        """Serialize the units of work that name the same thing until each commits (PostgreSQL's
        advisory locks; SQLite's one writer serializes them already)."""
        ...

    async def referrers(self, repository_id: int, subject: str, artifact_type: str | None) -> list[ReferrerRecord]: ...

    # namespace quotas and usage figures (:mod:`cargohold.quotas`, :mod:`cargohold.usage`)
    async def charge_quota(self, repository: str, repository_id: int | None, manifest: NewManifest,
                           ) -> QuotaCharge | None:
        """In a push's unit of work: lock the quota of the repository's namespace (None: it has none) and
        say what storing the manifest would add to its use."""
        ...

    async def add_quota_usage(self, namespace: str, delta: int) -> None: ...

    async def release_quota(self, repository: str, repository_id: int, digest: str) -> int:
        """In a delete's unit of work, before the manifest goes: take what only it used off its namespace's
        quota (the bytes freed)."""
        ...

    async def refresh_usage(self) -> int:
        """Compute the usage figures anew; when."""
        ...

    async def reconcile_quotas(self) -> None:
        """Recompute each quota's use exactly."""
        ...

    async def usage_report(self, name: str | None = None) -> UsageReport: ...

    # manifests generated from stored ones (schema 1 for legacy clients)
    async def generated_manifest(self, repository: str, tag: str, source_digest: str) -> ManifestRecord | None:
        """The manifest kept for ``tag`` from the stored manifest ``source_digest``, if one was."""
        ...

    async def generated_manifest_by_digest(self, repository: str, digest: str) -> ManifestRecord | None:
        """A kept generated manifest by its own digest, while its source manifest is stored."""
        ...

    async def keep_generated_manifest(
        self, repository_id: int, tag: str, source_digest: str, manifest: ManifestRecord
    ) -> ManifestRecord:
        """Keep ``manifest`` for (``tag``, ``source_digest``) unless one is kept already; the one kept.

        Two processes generating at once both get the first one's bytes.
        """
        ...

    # uploads
    async def create_upload(self, upload_id: str, repository: str, algorithm: str) -> None: ...
    async def upload(self, upload_id: str) -> UploadRecord | None: ...
    async def update_upload(self, upload_id: str, expected_size: int, size: int, hash_state: bytes | None) -> None:
        """Record progress; raises UploadConflict if the size is no longer ``expected_size``."""
        ...

    async def begin_upload_commit(self, upload_id: str, expected_size: int, size: int, digest: str) -> None:
        """Record the final size and verified digest of a finished upload, before its bytes are placed.

        Raises UploadConflict unless the recorded size is ``expected_size`` (before the final
        request's bytes) or already ``size``.
        """
        ...

    async def complete_upload(self, upload_id: str) -> None:
        """Mark a commit done (blob placed and recorded); the row stays until purged."""
        ...

    async def delete_upload(self, upload_id: str) -> None: ...
    async def stale_uploads(self, updated_before: int) -> list[str]: ...


class MetadataStore(MetadataQueries, AuditLog, Outbox, RuntimeEndpoints, ScrubRecords, MirrorRecords, Protocol):
    async def close(self) -> None: ...
    async def record_pulls(self, pulls: Sequence[tuple[str, str, int]]) -> None:
        """Record (repository name, manifest digest, epoch seconds) pulls in one transaction; a pull time only
        moves forward, and a manifest not stored (deleted meanwhile, or generated) is left out."""
        ...

    async def pulled_at(self, repository: str, digest: str) -> int | None:
        """When the manifest was last pulled, as recorded so far."""
        ...

    async def check(self) -> None:
        """Raise MetadataError unless the database answers now (for ``/readyz``)."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[MetadataQueries]:
        """A unit of work (see the module docstring): committed on leaving, rolled back on an exception."""
        ...

    def snapshot(self) -> AbstractAsyncContextManager[MetadataQueries]:
        """A unit of work that reads one snapshot of the database and writes nothing (a dry run)."""
        ...

    # job leases: one holder per job name across every process on this database
    async def acquire_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew ``name`` for ``holder`` until ``seconds`` from now; False while another holds it."""
        ...

    async def release_lease(self, name: str, holder: str) -> None:
        """Give ``name`` up if ``holder`` holds it, so another may take it at once."""
        ...

    async def drop_expired_leases(self, older_than_seconds: float) -> int:
        """Delete the leases that expired more than ``older_than_seconds`` ago; how many there were."""
        ...
