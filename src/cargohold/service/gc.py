"""Online garbage collection: manifests nothing keeps, then blobs no manifest references, then their bytes.

Queues. A change that may leave something unreferenced queues it in its own transaction
(:mod:`cargohold.metadata.sql_gc`), with the time it was queued: a tag moved or deleted queues the manifest
it pointed at; a manifest push queues the manifest itself; a manifest deleted queues its children, its
referrers and the blobs it referenced; a blob committed, mounted or unlinked queues the blob. A review row
is due once its time is a grace period old (``untagged_grace_period`` for manifests, ``grace_period`` for
blobs): every link of a blob was made when the blob was queued or before, so when its row is due, every
link is older than the grace period.

Rules. A manifest is kept while a tag points at it, a manifest of its repository references it (an index),
or, if it is a referrer, while its subject is stored in the repository (``referrers: collect``, as Zot's
``gcReferrers``) or always (``referrers: keep``). Otherwise it is deleted with its references and the
schema 1 manifests made from it, and what it referenced is queued. A blob's link in a repository is dropped
when no manifest of that repository references it (the empty layer of generated schema 1 manifests while
the repository keeps any); a blob with no link left that no manifest anywhere references loses its row,
and its bytes are queued for deletion by object key (S3) or by digest (filesystem). Bytes go only after
the row that named them.

Why a manifest push or a mount never meets a collected blob. A collection claims review rows with
``FOR UPDATE SKIP LOCKED`` (manifests one per transaction, blobs by the batch) and locks a blob's rows
(``blobs``, ``repository_blobs``) ``FOR UPDATE`` before it reads who references it; a manifest push
share-locks the links it checks, a mount upserts the blob's review row first and share-locks its ``blobs``
row. The first to commit wins: a push after the collection finds no link (MANIFEST_BLOB_UNKNOWN; the client
uploads again), a collection after the push reads its references and keeps the blob. A push of a manifest
upserts its review row first too, so a collection never deletes a manifest a push is tagging; a manifest an
index push share-locked is passed over (reviewed again later). SQLite's one writer (BEGIN IMMEDIATE) gives
the same order.

Why a re-push of a digest whose bytes are being deleted keeps them. On S3 a commit writes a new key and a
deletion removes the old one: they never meet. On the filesystem the path is the digest's. An upload's
commit records its digest on its row (``begin_upload_commit``) before it places the bytes, and that same
transaction first upserts the digest's review row, then deletes any deletion by digest queued for it:

- a collection that claimed the row first commits first; the commit then finds the deletion queued and
  cancels it, or finds it already done (the deleter unlinks while it holds the deletion's row locked, so
  the cancel waits for the unlink to be over), and only then places its bytes;
- a commit that upserted the row first has committed its digest before the collection reads the uploads:
  a collection never deletes a blob with a commit in flight (``completed`` false), it reviews it again
  later.

So no unlink happens after the bytes of a new commit are placed, and the blob row that commit adds names
bytes that stay.

A dry run reads the same rows in read-only transactions (PostgreSQL: REPEATABLE READ READ ONLY; SQLite: a
deferred one, no writer's lock) and applies its deletions to an overlay instead of the database, so it
reports what a real run with the same inputs deletes (the order of reviews does not change the result: a
deletion only ever makes other things unkept).
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from ..config import ServerConfig
from ..digest import Digest
from ..formats.schema1_image import EMPTY_LAYER_DIGEST
from ..metadata.gc_store import GcRunRecord, ObjectDeletion
from ..metadata.store import MetadataError, MetadataQueries, MetadataStore
from ..metrics import recorder as metrics
from ..storage.driver import BlobStore, KeyedObjects, StorageError
from .uploads import Uploads

#: a review row: a blob digest, or a manifest's (repository id, digest)
Row = TypeVar("Row", str, tuple[int, str])

log: Final = logging.getLogger("cargohold.gc")

#: review rows claimed (and files unlinked) per transaction: one holds SQLite's only write lock for tens of ms
BATCH: Final = 100
#: object deletions under way at once
PARALLEL_DELETES: Final = 16
#: runs listed by the history unless asked otherwise
HISTORY: Final = 20

_EMPTY: Final = str(EMPTY_LAYER_DIGEST)


@dataclass(frozen=True, slots=True)
class GcOptions:
    grace_period: float = 24 * 3600.0
    untagged_grace_period: float = 24 * 3600.0
    #: keep referrers whose subject is gone (``referrers: keep``) instead of collecting them with it
    keep_referrers: bool = False
    #: after this much work (seconds), the collection rests ``rest`` seconds (see :class:`_Pacer`)
    work_slice: float = 0.05
    rest: float = 0.15


class _Pacer:
    """Leaves the database and the CPU to serving: a rest after every slice of work.

    A collection runs transaction after transaction. On SQLite, a request's write waiting for the one write
    lock (its busy handler retries every 100 ms at worst, the worker's event loop blocked meanwhile) would
    rarely find the lock free in the microseconds between two of them, and stalled its worker for seconds;
    a rest longer than that retry lets it in. The collection also takes a quarter of one core, not a whole.
    """

    def __init__(self, options: GcOptions):
        self.options = options
        self.since = time.monotonic()

    async def rest(self) -> None:
        if time.monotonic() - self.since < self.options.work_slice:
            await asyncio.sleep(0)  # other requests of this process run between two transactions
            return
        await asyncio.sleep(self.options.rest)
        self.since = time.monotonic()


@dataclass
class _Repository:
    manifests: list[str] = field(default_factory=list)
    blobs: list[str] = field(default_factory=list)
    bytes: int = 0


@dataclass
class GcReport:
    """What a run deleted (or, dry, would delete): per repository and in total."""

    dry_run: bool
    started: float
    finished: float | None = None
    id: int | None = None
    repositories: dict[str, _Repository] = field(default_factory=dict)
    #: blobs whose row went, with their sizes
    blobs: dict[str, int] = field(default_factory=dict)
    objects_deleted: int = 0
    uploads: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def manifests(self) -> int:
        return sum(len(repository.manifests) for repository in self.repositories.values())

    @property
    def bytes_freed(self) -> int:
        return sum(self.blobs.values())

    def repository(self, name: str) -> _Repository:
        return self.repositories.setdefault(name, _Repository())

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "dry_run": self.dry_run, "started": self.started, "finished": self.finished,
            "manifests": self.manifests, "blobs": len(self.blobs), "bytes_freed": self.bytes_freed,
            "objects_deleted": self.objects_deleted, "uploads": self.uploads, "errors": self.errors,
            "repositories": {name: {"manifests": sorted(r.manifests), "blobs": sorted(r.blobs), "bytes": r.bytes}
                             for name, r in sorted(self.repositories.items())},
            "deleted_blobs": sorted(self.blobs),
        }

    def record(self) -> GcRunRecord:
        detail = self.to_json()
        return GcRunRecord(self.id or 0, self.started, self.finished, self.dry_run, self.manifests, len(self.blobs),
                           self.bytes_freed, len(self.errors), detail)


def run_json(run: GcRunRecord) -> dict[str, Any]:
    """A recorded run as the history lists it."""
    return {**run.detail, "id": run.id, "started": run.started, "finished": run.finished, "dry_run": run.dry_run,
            "manifests": run.manifests, "blobs": run.blobs, "bytes_freed": run.bytes_freed,
            "errors": run.detail.get("errors", []) if run.errors else []}


def open_collector(config: ServerConfig, meta: MetadataStore, blobs: BlobStore) -> Collector:
    """The collector of ``config``'s registry; its runs on demand also purge abandoned upload sessions."""
    options = GcOptions(
        grace_period=config.gc.seconds("grace_period"),
        untagged_grace_period=config.gc.seconds("untagged_grace_period"),
        keep_referrers=config.gc.referrers == "keep",
    )
    max_age = config.server.upload_max_age_seconds

    async def purge() -> int:
        return await Uploads(blobs, meta).purge(max_age)

    return Collector(meta, blobs, options, purge, max_age)


class _Overlay:
    """A dry run's deletions and queue, over the database it only reads (empty in a real run)."""

    def __init__(self) -> None:
        self.manifests: set[tuple[int, str]] = set()
        self.links: set[tuple[int, str]] = set()
        self.blobs: set[str] = set()
        #: review rows the dry run consumed (None) or queued (the time)
        self.manifest_rows: dict[tuple[int, str], int | None] = {}
        self.blob_rows: dict[str, int | None] = {}


class Collector:
    def __init__(
        self, meta: MetadataStore, store: BlobStore, options: GcOptions,
        purge_uploads: Callable[[], Awaitable[int]] | None = None, upload_max_age: float | None = None,
    ):
        self.meta = meta
        self.store = store
        self.options = options
        self.purge_uploads = purge_uploads
        self.upload_max_age = upload_max_age
        self._names: dict[int, str] = {}
        self._pacer = _Pacer(options)

    async def history(self, limit: int = HISTORY) -> list[GcRunRecord]:
        return await self.meta.gc_runs(limit)

    async def run(self, dry_run: bool = False, repository: str | None = None, uploads: bool = True) -> GcReport:
        """One collection; with ``repository`` (a glob) only manifests and links of the repositories it matches.

        ``uploads``: purge the abandoned upload sessions too (a dry run counts them), unless ``repository``
        narrows the run."""
        report = GcReport(dry_run, time.time())
        report.id = await self.meta.gc_start_run(report.started, dry_run)
        self._names = {}
        self._pacer = _Pacer(self.options)
        overlay = _Overlay() if dry_run else None
        try:
            if uploads and repository is None:
                await self._uploads(report)
            await self.review(report, overlay, repository)
            if not dry_run:
                await self.delete_objects(report)
        except (MetadataError, StorageError) as exc:
            log.exception("garbage collection failed")
            report.errors.append(str(exc))
        report.finished = time.time()
        await self.meta.gc_finish_run(report.record())
        if not dry_run:
            metrics.gc_run(report.bytes_freed)
        changed = report.manifests or report.blobs or report.errors or report.objects_deleted or report.uploads
        log.log(logging.INFO if changed else logging.DEBUG, "garbage collection", extra={
            "dry_run": dry_run, "manifests": report.manifests, "blobs": len(report.blobs),
            "bytes_freed": report.bytes_freed, "errors": len(report.errors)})
        return report

    async def review(self, report: GcReport, overlay: _Overlay | None = None, pattern: str | None = None) -> None:
        """Review the due manifests until none is left to delete, then the due blobs; their bytes are queued."""
        while await self._manifest_pass(report, overlay, pattern):
            pass
        await self._blob_pass(report, overlay, pattern)

    async def _uploads(self, report: GcReport) -> None:
        if report.dry_run:
            if self.upload_max_age is not None:
                report.uploads = len(await self.meta.stale_uploads(int(time.time() - self.upload_max_age)))
        elif self.purge_uploads is not None:
            report.uploads = await self.purge_uploads()

    async def _name(self, tx: MetadataQueries, repository_id: int) -> str:
        if repository_id not in self._names:
            self._names.update(await tx.gc_repository_names([repository_id]))
        return self._names.get(repository_id, f"#{repository_id}")

    async def _in_scope(self, tx: MetadataQueries, repository_id: int, pattern: str | None) -> bool:
        return pattern is None or fnmatch.fnmatchcase(await self._name(tx, repository_id), pattern)

    # manifests

    async def _dry_due_manifests(self, cutoff: int, overlay: _Overlay) -> list[tuple[int, str]]:
        async with self.meta.snapshot() as tx:
            return await _dry_due(tx.gc_due_manifests, (0, ""), cutoff, overlay.manifest_rows)

    async def _manifest_pass(self, report: GcReport, overlay: _Overlay | None, pattern: str | None) -> bool:
        """Review the due manifests once; whether any was deleted (which may make others due).

        A real run claims a batch per transaction; a dry run reads them in read-only transactions. Between
        two, other requests of this process run (SQLite's statements never yield inside one)."""
        cutoff = int(time.time() - self.options.untagged_grace_period)
        deleted = False
        if overlay is not None:
            rows = await self._dry_due_manifests(cutoff, overlay)
            for start in range(0, len(rows), BATCH):
                async with self.meta.snapshot() as tx:
                    for repository_id, digest in rows[start:start + BATCH]:
                        if await self._in_scope(tx, repository_id, pattern):
                            deleted |= await self._review_manifest(tx, repository_id, digest, report, overlay)
                await self._pacer.rest()
            return deleted
        # One manifest per transaction: a deletion queues other manifests' reviews, whose rows a concurrent
        # delete may hold while it waits for a row a batch would hold (a cycle of waits).
        after: tuple[int, str] = (0, "")
        while True:
            rows = await self.meta.gc_due_manifests(cutoff, after, BATCH, False)
            for repository_id, digest in rows:
                async with self.meta.transaction() as tx:
                    if await self._in_scope(tx, repository_id, pattern) and \
                            await tx.gc_claim_manifest(repository_id, digest, cutoff):
                        deleted |= await self._review_manifest(tx, repository_id, digest, report, overlay)
                await self._pacer.rest()
            if len(rows) < BATCH:
                return deleted
            after = rows[-1]

    async def _review_manifest(
        self, tx: MetadataQueries, repository_id: int, digest: str, report: GcReport, overlay: _Overlay | None,
    ) -> bool:
        def gone(manifest: str) -> bool:
            return overlay is not None and (repository_id, manifest) in overlay.manifests

        if overlay is None:
            await tx.gc_reviewed_manifest(repository_id, digest)
        else:
            overlay.manifest_rows[(repository_id, digest)] = None
        stored, subject = await tx.gc_manifest_subject(repository_id, digest, overlay is None)
        if stored is None:  # a push holds it: reviewed again after the grace period
            await tx.gc_reviewed_manifest(repository_id, digest, requeue_at=int(time.time()))
            return False
        if not stored or gone(digest) or await tx.gc_is_tagged(repository_id, digest):
            return False
        if any(not gone(parent) for parent in await tx.gc_referencing(repository_id, digest)):
            return False
        if subject is not None and (self.options.keep_referrers or (
                (await tx.gc_manifest_subject(repository_id, subject, False))[0] and not gone(subject))):
            return False
        now = int(time.time())
        if overlay is None:
            await tx.gc_delete_manifest(repository_id, digest, now)
        else:
            manifests, blobs = await tx.gc_unreferenced_by(repository_id, digest)
            overlay.manifests.add((repository_id, digest))
            for manifest in manifests:
                overlay.manifest_rows[(repository_id, manifest)] = now
            for blob in blobs:
                overlay.blob_rows[blob] = now
        report.repository(await self._name(tx, repository_id)).manifests.append(digest)
        return True

    # blobs

    async def _dry_due_blobs(self, cutoff: int, overlay: _Overlay) -> list[str]:
        async with self.meta.snapshot() as tx:
            return await _dry_due(tx.gc_due_blobs, "", cutoff, overlay.blob_rows)

    async def _blob_pass(self, report: GcReport, overlay: _Overlay | None, pattern: str | None) -> None:
        cutoff = int(time.time() - self.options.grace_period)
        if overlay is not None:
            rows = await self._dry_due_blobs(cutoff, overlay)
            for start in range(0, len(rows), BATCH):
                async with self.meta.snapshot() as tx:
                    for digest in rows[start:start + BATCH]:
                        await self._review_blob(tx, digest, report, overlay, pattern)
                await self._pacer.rest()
            return
        after = ""
        while True:
            async with self.meta.transaction() as tx:
                rows = await tx.gc_due_blobs(cutoff, after, BATCH, True)
                for digest in rows:
                    await self._review_blob(tx, digest, report, overlay, pattern)
            if len(rows) < BATCH:
                return
            after = rows[-1]
            await self._pacer.rest()

    async def _review_blob(
        self, tx: MetadataQueries, digest: str, report: GcReport, overlay: _Overlay | None, pattern: str | None,
    ) -> None:
        def gone(repository_id: int, manifest: str) -> bool:
            return overlay is not None and (repository_id, manifest) in overlay.manifests

        if await tx.gc_committing(digest):  # its bytes are on their way: reviewed again after its grace
            if overlay is None:
                await tx.gc_reviewed_blob(digest, requeue_at=int(time.time()))
            else:
                overlay.blob_rows[digest] = None
            return
        size, links = await tx.gc_blob_links(digest, overlay is None)
        if overlay is not None:
            links = [link for link in links if (link, digest) not in overlay.links]
            size = None if digest in overlay.blobs else size
        remaining = []
        for repository_id in links:
            if not await self._in_scope(tx, repository_id, pattern):
                remaining.append(repository_id)
                continue
            users = [m for m in await tx.gc_referencing(repository_id, digest) if not gone(repository_id, m)]
            if users or (digest == _EMPTY and any(
                    not gone(repository_id, source) for source in await tx.gc_generated_sources(repository_id))):
                remaining.append(repository_id)
                continue
            if overlay is None:
                await tx.gc_drop_link(repository_id, digest)
            else:
                overlay.links.add((repository_id, digest))
            dropped = report.repository(await self._name(tx, repository_id))
            dropped.blobs.append(digest)
            dropped.bytes += size or 0
        if pattern is not None and remaining:
            return  # left to a run over every repository
        if overlay is None:
            await tx.gc_reviewed_blob(digest)
        else:
            overlay.blob_rows[digest] = None
        if size is None or remaining:
            return
        if any(not gone(r, m) for r, m in await tx.gc_referencing_anywhere(digest)):
            return
        if overlay is None:
            await tx.gc_delete_blob(digest, size, int(time.time()))
        else:
            overlay.blobs.add(digest)
        report.blobs[digest] = size

    # bytes

    async def delete_objects(self, report: GcReport) -> None:
        """Delete the bytes of collected blobs (of this run and of earlier ones that failed)."""
        keyed = isinstance(self.store, KeyedObjects)
        if keyed:
            await self._delete_keys(report)
        after = 0
        while True:
            async with self.meta.transaction() as tx:
                batch = await tx.gc_object_deletions(False, after, BATCH, True)
                done: list[int] = []
                for deletion in batch:
                    try:
                        # held under the deletion's row lock (see the module docstring); a store that keeps
                        # keys has no bytes at a digest's address
                        if not keyed:
                            await self.store.delete(Digest.parse(deletion.digest))
                    except (StorageError, OSError) as exc:
                        await tx.gc_object_failed(deletion.id, str(exc))
                        report.errors.append(f"deleting {deletion.digest}: {exc}")
                    else:
                        done.append(deletion.id)
                await tx.gc_objects_deleted(done)
            report.objects_deleted += len(done)
            if len(batch) < BATCH:
                return
            after = batch[-1].id
            await self._pacer.rest()

    async def _delete_keys(self, report: GcReport) -> None:
        """Deletions by key: outside any transaction (a re-push writes another key), many at once."""
        assert isinstance(self.store, KeyedObjects)
        store = self.store
        limit = asyncio.Semaphore(PARALLEL_DELETES)

        async def delete(deletion: ObjectDeletion) -> str | None:
            assert deletion.key is not None
            async with limit:
                try:
                    await store.delete_key(deletion.key)
                except Exception as exc:  # any failure is recorded and tried again by the next run
                    return f"{type(exc).__name__}: {exc}"
            return None

        after = 0
        while batch := await self.meta.gc_object_deletions(True, after, BATCH, False):
            failures = await asyncio.gather(*(delete(deletion) for deletion in batch))
            await self.meta.gc_objects_deleted([d.id for d, failed in zip(batch, failures, strict=True) if not failed])
            for deletion, failed in zip(batch, failures, strict=True):
                if failed:
                    await self.meta.gc_object_failed(deletion.id, failed)
                    report.errors.append(f"deleting {deletion.key}: {failed}")
            report.objects_deleted += sum(1 for failed in failures if not failed)
            after = batch[-1].id
            await self._pacer.rest()


async def _dry_due(
    page_after: Callable[[int, Row, int, bool], Awaitable[list[Row]]], start: Row, cutoff: int,
    consumed: dict[Row, int | None],
) -> list[Row]:
    """A dry run's due review rows, all at once: the database's (paged from ``start``), less those the run
    consumed, plus those it queued (``consumed``: row -> when queued, None when consumed)."""
    rows: set[Row] = set()
    after = start
    while page := await page_after(cutoff, after, BATCH, False):
        rows.update(page)
        after = page[-1]
    rows = {row for row in rows if row not in consumed}
    rows.update(row for row, at in consumed.items() if at is not None and at <= cutoff)
    return sorted(rows)
