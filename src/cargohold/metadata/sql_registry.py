"""Registry metadata in SQL (:class:`~.store.MetadataStore`), on any :class:`~.sql.SqlDatabase`.

Where two writers can race, SQLite's single writer (BEGIN IMMEDIATE) keeps them apart, and on
PostgreSQL the row locks do: a tag moves in one upsert (tags are written in name order, so two
pushes moving the same tags cannot deadlock), an upload's size and commit change only from the
size the request read (a compare-and-set on the row), a lease is taken in one conditional upsert,
and the blobs and manifests a manifest push checked are share-locked until it commits (a
concurrent unlink or delete waits for it). Each change that may leave something unreferenced queues it
for garbage collection first, in its own transaction (:mod:`.sql_gc`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager

from ..events.audit import EventFilter, LoggedEvent
from ..events.model import Event
from ..events.outbox import Delivery, DeliveryState, NextDelivery
from ..immutable_tags import ImmutableRule
from ..memo import Memo
from ..mirror.model import MirrorJob, MirrorRun
from ..quotas import QuotaCharge
from ..scrub import ScrubFinding, ScrubRun
from ..usage import UsageReport
from . import sql_gc, sql_immutable, sql_mirrors, sql_retention, sql_scrub, sql_usage, sql_webhooks
from .batching import Batched
from .gc_store import GcRunRecord, ObjectDeletion
from .sql import SqlDatabase
from .sql_events import delete_events, insert_event, insert_events, select_events
from .store import (
    ManifestRecord,
    MetadataQueries,
    NewManifest,
    ReferrerRecord,
    RetentionView,
    StorePart,
    StoreUpload,
    UploadConflict,
    UploadRecord,
)


def _now() -> int:
    return int(time.time())


class SqlMetadataStore:
    def __init__(self, db: SqlDatabase):
        self._db = db
        #: events read back for their deliveries: each endpoint's delivery of an event reads it again
        self._decoded: Memo[int, Event] = Memo()
        #: blob HEADs and GETs: a pull storm asks for the same few blobs at once
        self._blob_sizes = Batched(self._linked_blob_sizes) if db.round_trips else None

    @property
    def database(self) -> SqlDatabase:
        """The database its queries go to."""
        return self._db

    async def close(self) -> None:
        await self._db.aclose()

    async def check(self) -> None:
        await self._db.check()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MetadataQueries]:
        async with self._db.unit_of_work():
            yield self

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[MetadataQueries]:
        async with self._db.unit_of_work(read_only=True):
            yield self

    # repositories

    async def repository_id(self, name: str) -> int | None:
        row = await self._db.fetchone("SELECT id FROM repositories WHERE name = ?", (name,))
        return None if row is None else int(row[0])

    async def ensure_repository(self, name: str) -> int:
        found = await self.repository_id(name)
        if found is not None:
            return found
        row = await self._db.fetchone(
            "INSERT INTO repositories (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING RETURNING id",
            (name, _now()),
        )
        if row is not None:
            return int(row[0])
        found = await self.repository_id(name)  # another writer's, committed meanwhile
        assert found is not None
        return found

    async def list_repositories(self, limit: int | None, last: str | None) -> list[str]:
        rows = await self._db.fetchall(
            "SELECT name FROM repositories WHERE name > ? ORDER BY name LIMIT ?",
            (last or "", self._db.unlimited if limit is None else limit),
        )
        return [row[0] for row in rows]

    # blobs

    async def blob_size(self, digest: str) -> int | None:
        row = await self._db.fetchone("SELECT size FROM blobs WHERE digest = ?", (digest,))
        return None if row is None else int(row[0])

    async def linked_blob_size(self, repository: str, digest: str) -> int | None:
        if self._blob_sizes is not None and not self._db.in_unit_of_work:
            return await self._blob_sizes.get((repository, digest))
        row = await self._db.fetchone(
            "SELECT b.size FROM repositories r"
            " JOIN repository_blobs rb ON rb.repository_id = r.id AND rb.digest = ?"
            " JOIN blobs b ON b.digest = rb.digest WHERE r.name = ?",
            (digest, repository),
        )
        return None if row is None else int(row[0])

    async def _linked_blob_sizes(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        rows = await self._db.fetchall(
            "SELECT r.name, rb.digest, b.size FROM repositories r"
            " JOIN repository_blobs rb ON rb.repository_id = r.id JOIN blobs b ON b.digest = rb.digest"
            f" WHERE (r.name, rb.digest) IN (VALUES {', '.join(['(?, ?)'] * len(keys))})",
            [value for key in keys for value in key],
        )
        return {(row[0], row[1]): int(row[2]) for row in rows}

    async def add_blob(self, repository_id: int, digest: str, size: int) -> None:
        now = _now()
        async with self._db.atomic():
            await sql_gc.queue_blobs(self._db, [digest], now)  # reviewed once its grace period is over
            await self._db.write(
                "INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, ?) ON CONFLICT (digest) DO NOTHING",
                (digest, size, now),
            )
            await self._db.write(
                "INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (repository_id, digest) DO NOTHING",
                (repository_id, digest, now),
            )

    async def link_blob(self, repository_id: int, digest: str) -> bool:
        now = _now()
        async with self._db.atomic():
            # the review row first (a collection of the digest and this mount run one after the other), then
            # the blob's row share-locked: a collection that deleted it meanwhile leaves nothing to link
            await sql_gc.queue_blobs(self._db, [digest], now)
            if await self._db.fetchone(f"SELECT 1 FROM blobs WHERE digest = ?{self._db.for_share()}",
                                       (digest,)) is None:
                return False
            await self._db.write(
                "INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (repository_id, digest) DO NOTHING",
                (repository_id, digest, now),
            )
        return True

    async def repositories_with_blob(self, digest: str, limit: int | None, last: str | None) -> list[str]:
        rows = await self._db.fetchall(
            "SELECT r.name FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id"
            " WHERE rb.digest = ? AND r.name > ? ORDER BY r.name LIMIT ?",
            (digest, last or "", self._db.unlimited if limit is None else limit),
        )
        return [row[0] for row in rows]

    async def unlink_blob(self, repository_id: int, digest: str) -> bool:
        async with self._db.atomic():
            await sql_gc.queue_blobs(self._db, [digest], _now())
            return await self._db.write(
                "DELETE FROM repository_blobs WHERE repository_id = ? AND digest = ?", (repository_id, digest)
            ) > 0

    async def _present(self, table: str, repository_id: int, digests: set[str]) -> set[str]:
        """Which of ``digests`` have a row in ``table`` (inside a unit of work: held as read until it commits)."""
        among, args = self._db.any_of(sorted(digests))
        rows = await self._db.fetchall(
            f"SELECT digest FROM {table} WHERE repository_id = ? AND digest {among}{self._db.for_share()}",
            (repository_id, *args),
        )
        return {row[0] for row in rows}

    async def unlinked_blobs(self, repository_id: int, digests: Iterable[str]) -> set[str]:
        wanted = set(digests)
        if not wanted:
            return set()
        return wanted - await self._present("repository_blobs", repository_id, wanted)

    # manifests and tags

    async def manifest(self, repository: str, digest: str) -> ManifestRecord | None:
        row = await self._db.fetchone(
            "SELECT m.digest, m.media_type, m.content FROM repositories r"
            " JOIN manifests m ON m.repository_id = r.id AND m.digest = ? WHERE r.name = ?",
            (digest, repository),
        )
        return None if row is None else ManifestRecord(row[0], row[1], row[2])

    async def tagged_manifest(self, repository: str, tag: str) -> ManifestRecord | None:
        row = await self._db.fetchone(
            "SELECT m.digest, m.media_type, m.content FROM repositories r"
            " JOIN tags t ON t.repository_id = r.id AND t.name = ?"
            " JOIN manifests m ON m.repository_id = r.id AND m.digest = t.manifest_digest"
            " WHERE r.name = ?",
            (tag, repository),
        )
        return None if row is None else ManifestRecord(row[0], row[1], row[2])

    async def missing_manifests(self, repository_id: int, digests: Iterable[str]) -> set[str]:
        wanted = set(digests)
        if not wanted:
            return set()
        return wanted - await self._present("manifests", repository_id, wanted)

    async def put_manifest(self, repository_id: int, manifest: NewManifest, tags: Sequence[str]) -> None:
        now = _now()
        async with self._db.atomic():
            await sql_gc.queue_pushed(self._db, repository_id, manifest.digest, tags, now)
            await self._db.write(
                "INSERT INTO manifests (repository_id, digest, media_type, content, artifact_type,"
                " subject_digest, annotations, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (repository_id, digest) DO NOTHING",
                (
                    repository_id,
                    manifest.digest,
                    manifest.media_type,
                    manifest.content,
                    manifest.artifact_type,
                    manifest.subject_digest,
                    manifest.annotations_json,
                    now,
                ),
            )
            await self._db.write_many(
                "INSERT INTO manifest_references (repository_id, manifest_digest, target_digest)"
                " VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [(repository_id, manifest.digest, target) for target in manifest.references],
            )
            await self._db.write_many(
                "INSERT INTO tags (repository_id, name, manifest_digest, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (repository_id, name) DO UPDATE"
                " SET manifest_digest = excluded.manifest_digest, updated_at = excluded.updated_at",
                [(repository_id, tag, manifest.digest, now) for tag in _in_lock_order(tags)],
            )

    async def delete_manifest(self, repository_id: int, digest: str) -> bool:
        async with self._db.atomic():
            return await self._delete_manifest(repository_id, digest, _now())

    async def _delete_manifest(self, repository_id: int, digest: str, now: int) -> bool:
        await sql_gc.queue_manifests(self._db, repository_id, [digest], now)  # the lock a collection shares
        manifests, blobs = await sql_gc.unreferenced_by(self._db, repository_id, digest)
        if not await sql_gc.delete_manifest_rows(self._db, repository_id, digest):
            return False
        await sql_gc.queue_manifests(self._db, repository_id, manifests, now)
        await sql_gc.queue_blobs(self._db, blobs, now)
        return True

    async def delete_tag(self, repository_id: int, tag: str, digest: str | None = None) -> bool:
        async with self._db.atomic():
            await sql_gc.queue_untagged(self._db, repository_id, tag, _now())
            if digest is None:
                return await self._db.write(
                    "DELETE FROM tags WHERE repository_id = ? AND name = ?", (repository_id, tag)
                ) > 0
            return await self._db.write(
                "DELETE FROM tags WHERE repository_id = ? AND name = ? AND manifest_digest = ?",
                (repository_id, tag, digest),
            ) > 0

    async def tag_targets(self, repository_id: int, tags: Sequence[str]) -> dict[str, str]:
        if not tags:
            return {}
        among, args = self._db.any_of(tags)
        rows = await self._db.fetchall(
            f"SELECT name, manifest_digest FROM tags WHERE repository_id = ? AND name {among}", (repository_id, *args),
        )
        return {row[0]: row[1] for row in rows}

    # pull times

    async def record_pulls(self, pulls: Sequence[tuple[str, str, int]]) -> None:
        rows = sorted(pulls)  # every worker writes rows in one order: two batches cannot deadlock
        if not rows:
            return
        async with self._db.unit_of_work():
            # a manifest deleted meanwhile is not pulled: the delete's row lock holds this until it commits
            share = self._db.for_share()
            await self._db.write_many(
                "INSERT INTO manifest_pulls (repository_id, digest, pulled_at)"
                " SELECT m.repository_id, m.digest, ? FROM repositories r"
                " JOIN manifests m ON m.repository_id = r.id AND m.digest = ?"
                f" WHERE r.name = ?{share + ' OF m' if share else ''}"
                " ON CONFLICT (repository_id, digest) DO UPDATE SET pulled_at = excluded.pulled_at"
                " WHERE manifest_pulls.pulled_at < excluded.pulled_at",
                [(at, digest, repository) for repository, digest, at in rows],
            )

    async def pulled_at(self, repository: str, digest: str) -> int | None:
        row = await self._db.fetchone(
            "SELECT p.pulled_at FROM repositories r"
            " JOIN manifest_pulls p ON p.repository_id = r.id AND p.digest = ? WHERE r.name = ?",
            (digest, repository),
        )
        return None if row is None else int(row[0])

    # generated manifests

    async def generated_manifest(self, repository: str, tag: str, source_digest: str) -> ManifestRecord | None:
        row = await self._db.fetchone(
            "SELECT g.digest, g.media_type, g.content FROM repositories r"
            " JOIN generated_manifests g ON g.repository_id = r.id AND g.tag = ? AND g.source_digest = ?"
            " WHERE r.name = ?",
            (tag, source_digest, repository),
        )
        return None if row is None else ManifestRecord(row[0], row[1], row[2])

    async def generated_manifest_by_digest(self, repository: str, digest: str) -> ManifestRecord | None:
        row = await self._db.fetchone(
            "SELECT g.digest, g.media_type, g.content FROM repositories r"
            " JOIN generated_manifests g ON g.repository_id = r.id AND g.digest = ?"
            " JOIN manifests m ON m.repository_id = r.id AND m.digest = g.source_digest"
            " WHERE r.name = ? LIMIT 1",
            (digest, repository),
        )
        return None if row is None else ManifestRecord(row[0], row[1], row[2])

    async def keep_generated_manifest(
        self, repository_id: int, tag: str, source_digest: str, manifest: ManifestRecord
    ) -> ManifestRecord:
        async with self._db.atomic():
            await self._db.write(
                "INSERT INTO generated_manifests (repository_id, tag, source_digest, digest, media_type, content,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (repository_id, tag, source_digest, manifest.digest, manifest.media_type, manifest.content, _now()),
            )
            row = await self._db.fetchone(
                "SELECT digest, media_type, content FROM generated_manifests"
                " WHERE repository_id = ? AND tag = ? AND source_digest = ?",
                (repository_id, tag, source_digest),
            )
        assert row is not None  # kept by this statement or by the one it waited for
        return ManifestRecord(row[0], row[1], row[2])

    async def list_tags(self, repository: str, limit: int | None, last: str | None) -> list[str] | None:
        # one round trip for a page that has tags; a second only to tell an empty page from no repository
        rows = await self._db.fetchall(
            # the repository as a scalar subquery, not a join: PostgreSQL's generic plan of a join walked the
            # tags of every repository in name order (33 ms a page among 100,000 tags against 2 ms)
            "SELECT name FROM tags WHERE repository_id = (SELECT id FROM repositories WHERE name = ?)"
            " AND name > ? ORDER BY name LIMIT ?",
            (repository, last or "", self._db.unlimited if limit is None else limit),
        )
        if not rows and await self.repository_id(repository) is None:
            return None
        return [row[0] for row in rows]

    async def referrers(self, repository_id: int, subject: str, artifact_type: str | None) -> list[ReferrerRecord]:
        text = (
            "SELECT digest, media_type, length(content), artifact_type, annotations FROM manifests"
            " WHERE repository_id = ? AND subject_digest = ?"
        )
        params: tuple[object, ...] = (repository_id, subject)
        if artifact_type is not None:
            text += " AND artifact_type = ?"
            params += (artifact_type,)
        rows = await self._db.fetchall(text + " ORDER BY digest", params)
        return [ReferrerRecord(r[0], r[1], int(r[2]), r[3], r[4]) for r in rows]

    # uploads

    async def create_upload(self, upload_id: str, repository: str, algorithm: str) -> None:
        now = _now()
        await self._db.write(
            "INSERT INTO uploads (id, repository, size, algorithm, hash_state, created_at, updated_at)"
            " VALUES (?, ?, 0, ?, NULL, ?, ?)",
            (upload_id, repository, algorithm, now, now),
        )

    async def upload(self, upload_id: str) -> UploadRecord | None:
        row = await self._db.fetchone(
            "SELECT id, repository, size, algorithm, hash_state, created_at, updated_at, digest, completed"
            " FROM uploads WHERE id = ?",
            (upload_id,),
        )
        if row is None:
            return None
        return UploadRecord(
            row[0], row[1], int(row[2]), row[3], None if row[4] is None else bytes(row[4]), int(row[5]), int(row[6]),
            row[7], bool(row[8]),
        )

    async def update_upload(self, upload_id: str, expected_size: int, size: int, hash_state: bytes | None) -> None:
        if await self._db.write(
            "UPDATE uploads SET size = ?, hash_state = ?, updated_at = ? WHERE id = ? AND size = ? AND digest IS NULL",
            (size, hash_state, _now(), upload_id, expected_size),
        ) != 1:
            raise UploadConflict(f"upload {upload_id} changed during the request")

    async def begin_upload_commit(self, upload_id: str, expected_size: int, size: int, digest: str) -> None:
        now = _now()
        async with self._db.atomic():
            # after any collection of the digest that holds its review row (see cargohold.service.gc)
            await sql_gc.queue_blobs(self._db, [digest], now)
            await sql_gc.cancel_deletion(self._db, digest)
            if await self._db.write(
                "UPDATE uploads SET size = ?, hash_state = NULL, digest = ?, updated_at = ?"
                " WHERE id = ? AND size IN (?, ?) AND digest IS NULL",
                (size, digest, now, upload_id, expected_size, size),
            ) != 1:
                raise UploadConflict(f"upload {upload_id} changed during the request")

    async def complete_upload(self, upload_id: str) -> None:
        await self._db.write("UPDATE uploads SET completed = ?, updated_at = ? WHERE id = ?", (True, _now(), upload_id))

    async def delete_upload(self, upload_id: str) -> None:
        await self._db.write("DELETE FROM uploads WHERE id = ?", (upload_id,))

    async def stale_uploads(self, updated_before: int) -> list[str]:
        rows = await self._db.fetchall("SELECT id FROM uploads WHERE updated_at < ?", (updated_before,))
        return [row[0] for row in rows]

    # a blob store's own upload state (storage.s3)

    async def store_upload(self, upload_id: str) -> StoreUpload | None:
        row = await self._db.fetchone("SELECT session, size FROM store_uploads WHERE upload_id = ?", (upload_id,))
        if row is None:
            return None
        parts = await self._db.fetchall(
            "SELECT number, etag, size FROM store_upload_parts WHERE upload_id = ? ORDER BY number", (upload_id,))
        return StoreUpload(row[0], int(row[1]), tuple(StorePart(int(n), e, int(z)) for n, e, z in parts))

    async def save_store_upload(self, upload_id: str, session: str, size: int) -> None:
        await self._db.write(
            "INSERT INTO store_uploads (upload_id, session, size, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (upload_id) DO UPDATE SET session = excluded.session, size = excluded.size,"
            " updated_at = excluded.updated_at",
            (upload_id, session, size, _now()),
        )

    async def save_store_part(self, upload_id: str, part: StorePart) -> None:
        await self._db.write(
            "INSERT INTO store_upload_parts (upload_id, number, etag, size) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (upload_id, number) DO UPDATE SET etag = excluded.etag, size = excluded.size",
            (upload_id, part.number, part.etag, part.size),
        )

    async def delete_store_upload(self, upload_id: str) -> None:
        await self._db.write("DELETE FROM store_upload_parts WHERE upload_id = ?", (upload_id,))
        await self._db.write("DELETE FROM store_uploads WHERE upload_id = ?", (upload_id,))

    async def store_upload_ids(self) -> dict[str, float]:
        rows = await self._db.fetchall("SELECT upload_id, updated_at FROM store_uploads")
        return {row[0]: float(row[1]) for row in rows}

    async def store_blob_key(self, digest: str) -> str | None:
        row = await self._db.fetchone("SELECT key FROM store_blobs WHERE digest = ?", (digest,))
        return None if row is None else str(row[0])

    async def claim_store_blob_key(self, digest: str, key: str) -> str:
        await self._db.write(
            "INSERT INTO store_blobs (digest, key) VALUES (?, ?) ON CONFLICT (digest) DO NOTHING", (digest, key))
        standing = await self.store_blob_key(digest)
        assert standing is not None
        return standing

    async def delete_store_blob_key(self, digest: str) -> None:
        await self._db.write("DELETE FROM store_blobs WHERE digest = ?", (digest,))

    async def store_blob_keys(self) -> set[str]:
        return {str(row[0]) for row in await self._db.fetchall("SELECT key FROM store_blobs")}

    async def named_blobs(self, digests: Sequence[str]) -> set[str]:
        return await sql_scrub.named_blobs(self._db, digests)

    # the scrub (cargohold.scrub)

    async def scrub_sample(self, after: str | None, limit: int) -> list[tuple[str, int]]:
        return await sql_scrub.sample(self._db, after, limit)

    async def scrub_last_digest(self) -> str | None:
        return await sql_scrub.last_digest(self._db)

    async def record_scrub_finding(self, finding: ScrubFinding) -> None:
        await sql_scrub.record_finding(self._db, finding)

    async def clear_scrub_findings(self, digests: Sequence[str]) -> None:
        await sql_scrub.clear_findings(self._db, digests)

    async def add_scrub_run(self, run: ScrubRun) -> ScrubRun:
        return await sql_scrub.add_run(self._db, run)

    async def scrub_findings(self) -> list[ScrubFinding]:
        return await sql_scrub.findings(self._db)

    async def scrub_runs(self, limit: int) -> list[ScrubRun]:
        return await sql_scrub.runs(self._db, limit)

    # mirror jobs (cargohold.mirror)

    async def add_mirror(self, job: MirrorJob) -> None:
        await sql_mirrors.add(self._db, job)

    async def mirror(self, name: str) -> MirrorJob | None:
        return await sql_mirrors.get(self._db, name)

    async def mirrors(self) -> list[MirrorJob]:
        return await sql_mirrors.every(self._db)

    async def remove_mirror(self, name: str) -> bool:
        return await sql_mirrors.remove(self._db, name)

    async def due_mirrors(self, now: float) -> list[MirrorJob]:
        return await sql_mirrors.due(self._db, now)

    async def start_mirror_run(self, run: MirrorRun) -> MirrorRun:
        return await sql_mirrors.start_run(self._db, run)

    async def finish_mirror_run(self, run: MirrorRun, next_run_at: float, failures: int) -> None:
        await sql_mirrors.finish_run(self._db, run, next_run_at, failures)

    async def mirror_runs(self, name: str, limit: int) -> list[MirrorRun]:
        return await sql_mirrors.runs(self._db, name, limit)

    # garbage collection (cargohold.service.gc)

    async def gc_due_manifests(
        self, cutoff: int, after: tuple[int, str], limit: int, claim: bool) -> list[tuple[int, str]]:
        return await sql_gc.due_manifests(self._db, cutoff, after, limit, claim)

    async def gc_claim_manifest(self, repository_id: int, digest: str, cutoff: int) -> bool:
        return await sql_gc.claim_manifest(self._db, repository_id, digest, cutoff)

    async def gc_due_blobs(self, cutoff: int, after: str, limit: int, claim: bool) -> list[str]:
        return await sql_gc.due_blobs(self._db, cutoff, after, limit, claim)

    async def gc_manifest_subject(
        self, repository_id: int, digest: str, lock: bool) -> tuple[bool | None, str | None]:
        return await sql_gc.manifest_subject(self._db, repository_id, digest, lock)

    async def gc_is_tagged(self, repository_id: int, digest: str) -> bool:
        return await sql_gc.is_tagged(self._db, repository_id, digest)

    async def gc_referencing(self, repository_id: int, digest: str) -> list[str]:
        return await sql_gc.referencing(self._db, repository_id, digest)

    async def gc_referencing_anywhere(self, digest: str) -> list[tuple[int, str]]:
        return await sql_gc.referencing_anywhere(self._db, digest)

    async def gc_generated_sources(self, repository_id: int) -> list[str]:
        return await sql_gc.generated_sources(self._db, repository_id)

    async def gc_unreferenced_by(self, repository_id: int, digest: str) -> tuple[list[str], list[str]]:
        return await sql_gc.unreferenced_by(self._db, repository_id, digest)

    async def gc_committing(self, digest: str) -> bool:
        return await sql_gc.committing(self._db, digest)

    async def gc_blob_links(self, digest: str, lock: bool) -> tuple[int | None, list[int]]:
        return await sql_gc.blob_links(self._db, digest, lock)

    async def gc_repository_names(self, ids: list[int]) -> dict[int, str]:
        return await sql_gc.repository_names(self._db, ids)

    async def gc_delete_manifest(self, repository_id: int, digest: str, now: int) -> None:
        name = await self._db.fetchone("SELECT name FROM repositories WHERE id = ?", (repository_id,))
        if name is not None:  # what only it used comes off its namespace's quota, as with a DELETE
            await sql_usage.release_manifest(self._db, name[0], repository_id, digest)
        await self._delete_manifest(repository_id, digest, now)

    async def gc_drop_link(self, repository_id: int, digest: str) -> None:
        await sql_gc.drop_link(self._db, repository_id, digest)

    async def gc_delete_blob(self, digest: str, size: int, now: int) -> None:
        await sql_gc.delete_blob(self._db, digest, size, now)

    async def gc_reviewed_manifest(self, repository_id: int, digest: str, requeue_at: int | None = None) -> None:
        if requeue_at is None:
            await sql_gc.reviewed_manifest(self._db, repository_id, digest)
        else:
            await sql_gc.queue_manifests(self._db, repository_id, [digest], requeue_at)

    async def gc_reviewed_blob(self, digest: str, requeue_at: int | None = None) -> None:
        if requeue_at is None:
            await sql_gc.reviewed_blob(self._db, digest)
        else:
            await sql_gc.queue_blobs(self._db, [digest], requeue_at)

    async def gc_object_deletions(self, keyed: bool, after: int, limit: int, claim: bool) -> list[ObjectDeletion]:
        return await sql_gc.object_deletions(self._db, keyed, after, limit, claim)

    async def gc_objects_deleted(self, ids: list[int]) -> None:
        await sql_gc.objects_deleted(self._db, ids)

    async def gc_object_failed(self, deletion_id: int, error: str) -> None:
        await sql_gc.object_failed(self._db, deletion_id, error)

    async def gc_start_run(self, started: float, dry_run: bool) -> int:
        return await sql_gc.start_run(self._db, started, dry_run)

    async def gc_finish_run(self, run: GcRunRecord) -> None:
        await sql_gc.finish_run(self._db, run)

    async def gc_runs(self, limit: int) -> list[GcRunRecord]:
        return await sql_gc.runs(self._db, limit)

    # job leases

    async def acquire_lease(self, name: str, holder: str, seconds: float) -> bool:
        now = time.time()
        return await self._db.write(
            "INSERT INTO job_leases (name, holder, expires_at) VALUES (?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at"
            " WHERE job_leases.holder = excluded.holder OR job_leases.expires_at < ?",
            (name, holder, now + seconds, now),
        ) == 1

    async def release_lease(self, name: str, holder: str) -> None:
        await self._db.write("DELETE FROM job_leases WHERE name = ? AND holder = ?", (name, holder))

    async def drop_expired_leases(self, older_than_seconds: float) -> int:
        if older_than_seconds < 0:
            raise ValueError("a lease not expired yet is never dropped")
        return await self._db.write("DELETE FROM job_leases WHERE expires_at < ?", (time.time() - older_than_seconds,))

    # events

    async def add_event(self, event: Event, deliver_to: Sequence[str] = ()) -> int:
        return await insert_event(self._db, event, deliver_to)

    async def add_events(self, events: Sequence[tuple[Event, Sequence[str]]]) -> None:
        await insert_events(self._db, events)

    async def list_events(self, where: EventFilter, limit: int, before: int | None = None) -> list[LoggedEvent]:
        return await select_events(self._db, where, limit, before)

    async def purge_events(self, older_than: float) -> int:
        return await delete_events(self._db, older_than)

    # the outbox of webhook deliveries, and the endpoints added at run time

    async def next_delivery(self, endpoint: str) -> NextDelivery | None:
        return await sql_webhooks.next_delivery(self._db, endpoint)

    async def claim_deliveries(
        self, endpoint: str, holder: str, now: float, lease_until: float, limit: int,
    ) -> list[Delivery]:
        return await sql_webhooks.claim_deliveries(self._db, endpoint, holder, now, lease_until, limit, self._decoded)

    async def finish_deliveries(
        self, delivery_ids: Sequence[int], holder: str, *, delivered: bool, status: int | None, error: str | None,
        retry_at: float, max_attempts: int, now: float,
    ) -> int:
        return await sql_webhooks.finish_deliveries(
            self._db, delivery_ids, holder, delivered=delivered, status=status, error=error, retry_at=retry_at,
            max_attempts=max_attempts, now=now,
        )

    async def release_deliveries(self, delivery_ids: Sequence[int], holder: str) -> None:
        await sql_webhooks.release_deliveries(self._db, delivery_ids, holder)

    async def deliveries(
        self, endpoint: str | None, state: DeliveryState | None, limit: int, before: int | None,
    ) -> list[Delivery]:
        return await sql_webhooks.deliveries(self._db, endpoint, state, limit, before)

    async def redeliver(self, delivery_id: int, now: float) -> Delivery | None:
        return await sql_webhooks.redeliver(self._db, delivery_id, now)

    async def pending_deliveries(self) -> int:
        return await sql_webhooks.pending_deliveries(self._db)

    async def webhook_endpoints(self) -> Sequence[tuple[str, str]]:
        return await sql_webhooks.webhook_endpoints(self._db)

    async def add_webhook_endpoint(self, name: str, settings: str, now: float) -> bool:
        return await sql_webhooks.add_webhook_endpoint(self._db, name, settings, now)

    async def remove_webhook_endpoint(self, name: str, now: float) -> bool:
        return await sql_webhooks.remove_webhook_endpoint(self._db, name, now)

    # immutable tag rules

    async def manifest_tags(self, repository_id: int, digest: str) -> list[str]:
        return await sql_immutable.manifest_tags(self._db, repository_id, digest)

    async def immutable_rules(self) -> list[ImmutableRule]:
        return await sql_immutable.rules(self._db)

    async def hold_locks(self, names: Iterable[str]) -> None:
        await self._db.hold_locks(names)

    # retention

    async def retention_view(self, repository_id: int) -> RetentionView:
        return await sql_retention.repository_view(self._db, repository_id)

    async def is_listed(self, repository_id: int, digest: str) -> bool:
        return await sql_retention.is_listed(self._db, repository_id, digest)

    # namespace quotas and usage figures

    async def charge_quota(self, repository: str, repository_id: int | None, manifest: NewManifest,
                           ) -> QuotaCharge | None:
        return await sql_usage.charge_manifest(self._db, repository, repository_id, manifest.digest,
                                               len(manifest.content), manifest.references)

    async def add_quota_usage(self, namespace: str, delta: int) -> None:
        await sql_usage.add_used(self._db, namespace, delta)

    async def release_quota(self, repository: str, repository_id: int, digest: str) -> int:
        return await sql_usage.release_manifest(self._db, repository, repository_id, digest)

    async def refresh_usage(self) -> int:
        return await sql_usage.refresh_usage(self._db)

    async def reconcile_quotas(self) -> None:
        await sql_usage.reconcile_quotas(self._db)

    async def usage_report(self, name: str | None = None) -> UsageReport:
        return await sql_usage.usage_report(self._db, name)


def _in_lock_order(tags: Sequence[str]) -> list[str]:
    """Tags sorted, so that two transactions lock the rows they share in the same order (no deadlock);
    a NULL (refused by the table) keeps its place at the end."""
    return sorted(tags, key=lambda tag: (tag is None, tag or ""))
