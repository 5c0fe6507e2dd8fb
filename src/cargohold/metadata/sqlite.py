"""SQLite metadata store: the embedded default.

One connection per process (see :mod:`.sqlite_db`). Queries run inline on the
event loop: they take microseconds, less than handing them to a thread would.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager

from ..events.audit import EventFilter, LoggedEvent
from ..events.model import Event
from ..events.outbox import Delivery, DeliveryState, NextDelivery
from ..memo import Memo
from . import sqlite_webhooks
from .migrations import require_current
from .sqlite_db import SqliteDatabase
from .sqlite_events import delete_events, insert_event, insert_events, select_events
from .sqlite_schema import applied_versions
from .store import (
    ManifestRecord,
    MetadataError,
    MetadataQueries,
    NewManifest,
    ReferrerRecord,
    StorePart,
    StoreUpload,
    UploadConflict,
    UploadRecord,
)


def _now() -> int:
    return int(time.time())


class SqliteMetadataStore:
    def __init__(self, path: str):
        self.path = path
        if path != ":memory:" and not os.path.exists(path):  # refused without creating an empty file
            require_current((), "sqlite")
        self._db = SqliteDatabase(path, what="metadata")
        #: events read back for their deliveries: each endpoint's delivery of an event reads it again
        self._decoded: Memo[int, Event] = Memo()
        try:
            require_current(applied_versions(self._db), "sqlite")
        except BaseException:
            self._db.close()
            raise

    async def close(self) -> None:
        self._db.close()

    async def check(self) -> None:
        # an open connection keeps working on a file deleted under it, losing every write
        if self.path != ":memory:" and not os.path.exists(self.path):
            raise MetadataError(f"metadata: {self.path} is gone")
        self._db.execute("SELECT version FROM schema_migrations LIMIT 1").fetchall()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MetadataQueries]:
        async with self._db.unit_of_work():
            yield self

    # repositories

    async def repository_id(self, name: str) -> int | None:
        row = self._db.execute("SELECT id FROM repositories WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    async def ensure_repository(self, name: str) -> int:
        found = await self.repository_id(name)
        if found is not None:
            return found
        self._db.execute(
            "INSERT INTO repositories (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
            (name, _now()),
        )
        found = await self.repository_id(name)
        assert found is not None
        return found

    async def list_repositories(self, limit: int | None, last: str | None) -> list[str]:
        rows = self._db.execute(
            "SELECT name FROM repositories WHERE name > ? ORDER BY name LIMIT ?",
            (last or "", -1 if limit is None else limit),
        )
        return [row[0] for row in rows]

    # blobs

    async def blob_size(self, digest: str) -> int | None:
        row = self._db.execute("SELECT size FROM blobs WHERE digest = ?", (digest,)).fetchone()
        return None if row is None else int(row[0])

    async def linked_blob_size(self, repository: str, digest: str) -> int | None:
        row = self._db.execute(
            "SELECT b.size FROM repositories r"
            " JOIN repository_blobs rb ON rb.repository_id = r.id AND rb.digest = ?"
            " JOIN blobs b ON b.digest = rb.digest WHERE r.name = ?",
            (digest, repository),
        ).fetchone()
        return None if row is None else int(row[0])

    async def add_blob(self, repository_id: int, digest: str, size: int) -> None:
        now = _now()
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, ?) ON CONFLICT (digest) DO NOTHING",
                (digest, size, now),
            )
            db.execute(
                "INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (repository_id, digest) DO NOTHING",
                (repository_id, digest, now),
            )

    async def link_blob(self, repository_id: int, digest: str) -> bool:
        cursor = self._db.execute(
            "INSERT INTO repository_blobs (repository_id, digest, created_at)"
            " SELECT ?, digest, ? FROM blobs WHERE digest = ?"
            " ON CONFLICT (repository_id, digest) DO NOTHING",
            (repository_id, _now(), digest),
        )
        if cursor.rowcount:
            return True
        row = self._db.execute(
            "SELECT 1 FROM repository_blobs WHERE repository_id = ? AND digest = ?", (repository_id, digest)
        ).fetchone()
        return row is not None

    async def repositories_with_blob(self, digest: str, limit: int | None, last: str | None) -> list[str]:
        rows = self._db.execute(
            "SELECT r.name FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id"
            " WHERE rb.digest = ? AND r.name > ? ORDER BY r.name LIMIT ?",
            (digest, last or "", -1 if limit is None else limit),
        )
        return [row[0] for row in rows]

    async def unlink_blob(self, repository_id: int, digest: str) -> bool:
        cursor = self._db.execute(
            "DELETE FROM repository_blobs WHERE repository_id = ? AND digest = ?", (repository_id, digest)
        )
        return cursor.rowcount > 0

    async def unlinked_blobs(self, repository_id: int, digests: Iterable[str]) -> set[str]:
        wanted = set(digests)
        if not wanted:
            return set()
        marks = ",".join("?" * len(wanted))
        rows = self._db.execute(
            f"SELECT digest FROM repository_blobs WHERE repository_id = ? AND digest IN ({marks})",
            (repository_id, *wanted),
        )
        return wanted - {row[0] for row in rows}

    # manifests and tags

    async def manifest(self, repository: str, digest: str) -> ManifestRecord | None:
        row = self._db.execute(
            "SELECT m.digest, m.media_type, m.content FROM repositories r"
            " JOIN manifests m ON m.repository_id = r.id AND m.digest = ? WHERE r.name = ?",
            (digest, repository),
        ).fetchone()
        return None if row is None else ManifestRecord(row[0], row[1], row[2])

    async def tagged_manifest(self, repository: str, tag: str) -> ManifestRecord | None:
        row = self._db.execute(
            "SELECT m.digest, m.media_type, m.content FROM repositories r"
            " JOIN tags t ON t.repository_id = r.id AND t.name = ?"
            " JOIN manifests m ON m.repository_id = r.id AND m.digest = t.manifest_digest"
            " WHERE r.name = ?",
            (tag, repository),
        ).fetchone()
        return None if row is None else ManifestRecord(row[0], row[1], row[2])

    async def missing_manifests(self, repository_id: int, digests: Iterable[str]) -> set[str]:
        wanted = set(digests)
        if not wanted:
            return set()
        marks = ",".join("?" * len(wanted))
        rows = self._db.execute(
            f"SELECT digest FROM manifests WHERE repository_id = ? AND digest IN ({marks})",
            (repository_id, *wanted),
        )
        return wanted - {row[0] for row in rows}

    async def put_manifest(self, repository_id: int, manifest: NewManifest, tags: Sequence[str]) -> None:
        now = _now()
        with self._db.transaction() as db:
            db.execute(
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
            db.executemany(
                "INSERT INTO manifest_references (repository_id, manifest_digest, target_digest)"
                " VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [(repository_id, manifest.digest, target) for target in manifest.references],
            )
            db.executemany(
                "INSERT INTO tags (repository_id, name, manifest_digest, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (repository_id, name) DO UPDATE"
                " SET manifest_digest = excluded.manifest_digest, updated_at = excluded.updated_at",
                [(repository_id, tag, manifest.digest, now) for tag in tags],
            )

    async def delete_manifest(self, repository_id: int, digest: str) -> bool:
        with self._db.transaction() as db:
            cursor = db.execute(
                "DELETE FROM manifests WHERE repository_id = ? AND digest = ?", (repository_id, digest)
            )
            if not cursor.rowcount:
                return False
            db.execute("DELETE FROM tags WHERE repository_id = ? AND manifest_digest = ?", (repository_id, digest))
            db.execute(
                "DELETE FROM manifest_references WHERE repository_id = ? AND manifest_digest = ?",
                (repository_id, digest),
            )
            db.execute(
                "DELETE FROM generated_manifests WHERE repository_id = ? AND source_digest = ?",
                (repository_id, digest),
            )
        return True

    async def delete_tag(self, repository_id: int, tag: str) -> bool:
        cursor = self._db.execute("DELETE FROM tags WHERE repository_id = ? AND name = ?", (repository_id, tag))
        return cursor.rowcount > 0

    async def tag_targets(self, repository_id: int, tags: Sequence[str]) -> dict[str, str]:
        if not tags:
            return {}
        marks = ",".join("?" * len(tags))
        rows = self._db.execute(
            f"SELECT name, manifest_digest FROM tags WHERE repository_id = ? AND name IN ({marks})",
            (repository_id, *tags),
        )
        return {row[0]: row[1] for row in rows}

    # generated manifests

    async def generated_manifest(self, repository: str, tag: str, source_digest: str) -> ManifestRecord | None:
        row = self._db.execute(
            "SELECT g.digest, g.media_type, g.content FROM repositories r"
            " JOIN generated_manifests g ON g.repository_id = r.id AND g.tag = ? AND g.source_digest = ?"
            " WHERE r.name = ?",
            (tag, source_digest, repository),
        ).fetchone()
        return None if row is None else ManifestRecord(row[0], row[1], row[2])

    async def generated_manifest_by_digest(self, repository: str, digest: str) -> ManifestRecord | None:
        row = self._db.execute(
            "SELECT g.digest, g.media_type, g.content FROM repositories r"
            " JOIN generated_manifests g ON g.repository_id = r.id AND g.digest = ?"
            " JOIN manifests m ON m.repository_id = r.id AND m.digest = g.source_digest"
            " WHERE r.name = ? LIMIT 1",
            (digest, repository),
        ).fetchone()
        return None if row is None else ManifestRecord(row[0], row[1], row[2])

    async def keep_generated_manifest(
        self, repository_id: int, tag: str, source_digest: str, manifest: ManifestRecord
    ) -> ManifestRecord:
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO generated_manifests (repository_id, tag, source_digest, digest, media_type, content,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (repository_id, tag, source_digest, manifest.digest, manifest.media_type, manifest.content, _now()),
            )
            row = db.execute(
                "SELECT digest, media_type, content FROM generated_manifests"
                " WHERE repository_id = ? AND tag = ? AND source_digest = ?",
                (repository_id, tag, source_digest),
            ).fetchone()
        return ManifestRecord(row[0], row[1], row[2])

    async def list_tags(self, repository_id: int, limit: int | None, last: str | None) -> list[str]:
        rows = self._db.execute(
            "SELECT name FROM tags WHERE repository_id = ? AND name > ? ORDER BY name LIMIT ?",
            (repository_id, last or "", -1 if limit is None else limit),
        )
        return [row[0] for row in rows]

    async def referrers(self, repository_id: int, subject: str, artifact_type: str | None) -> list[ReferrerRecord]:
        sql = (
            "SELECT digest, media_type, length(content), artifact_type, annotations FROM manifests"
            " WHERE repository_id = ? AND subject_digest = ?"
        )
        params: tuple[object, ...] = (repository_id, subject)
        if artifact_type is not None:
            sql += " AND artifact_type = ?"
            params += (artifact_type,)
        rows = self._db.execute(sql + " ORDER BY digest", params)
        return [ReferrerRecord(r[0], r[1], int(r[2]), r[3], r[4]) for r in rows]

    # uploads

    async def create_upload(self, upload_id: str, repository: str, algorithm: str) -> None:
        now = _now()
        self._db.execute(
            "INSERT INTO uploads (id, repository, size, algorithm, hash_state, created_at, updated_at)"
            " VALUES (?, ?, 0, ?, NULL, ?, ?)",
            (upload_id, repository, algorithm, now, now),
        )

    async def upload(self, upload_id: str) -> UploadRecord | None:
        row = self._db.execute(
            "SELECT id, repository, size, algorithm, hash_state, created_at, updated_at, digest, completed"
            " FROM uploads WHERE id = ?",
            (upload_id,),
        ).fetchone()
        if row is None:
            return None
        return UploadRecord(
            row[0], row[1], int(row[2]), row[3], row[4], int(row[5]), int(row[6]), row[7], bool(row[8])
        )

    async def update_upload(self, upload_id: str, expected_size: int, size: int, hash_state: bytes | None) -> None:
        cursor = self._db.execute(
            "UPDATE uploads SET size = ?, hash_state = ?, updated_at = ? WHERE id = ? AND size = ? AND digest IS NULL",
            (size, hash_state, _now(), upload_id, expected_size),
        )
        if cursor.rowcount != 1:
            raise UploadConflict(f"upload {upload_id} changed during the request")

    async def begin_upload_commit(self, upload_id: str, expected_size: int, size: int, digest: str) -> None:
        cursor = self._db.execute(
            "UPDATE uploads SET size = ?, hash_state = NULL, digest = ?, updated_at = ?"
            " WHERE id = ? AND size IN (?, ?) AND digest IS NULL",
            (size, digest, _now(), upload_id, expected_size, size),
        )
        if cursor.rowcount != 1:
            raise UploadConflict(f"upload {upload_id} changed during the request")

    async def complete_upload(self, upload_id: str) -> None:
        self._db.execute("UPDATE uploads SET completed = 1, updated_at = ? WHERE id = ?", (_now(), upload_id))

    async def delete_upload(self, upload_id: str) -> None:
        self._db.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))

    async def stale_uploads(self, updated_before: int) -> list[str]:
        rows = self._db.execute("SELECT id FROM uploads WHERE updated_at < ?", (updated_before,))
        return [row[0] for row in rows]

    # a blob store's own upload state (storage.s3)

    async def store_upload(self, upload_id: str) -> StoreUpload | None:
        row = self._db.execute(
            "SELECT session, size FROM store_uploads WHERE upload_id = ?", (upload_id,)).fetchone()
        if row is None:
            return None
        parts = self._db.execute(
            "SELECT number, etag, size FROM store_upload_parts WHERE upload_id = ? ORDER BY number", (upload_id,)
        ).fetchall()
        return StoreUpload(row[0], int(row[1]), tuple(StorePart(int(n), e, int(z)) for n, e, z in parts))

    async def save_store_upload(self, upload_id: str, session: str, size: int) -> None:
        self._db.execute(
            "INSERT INTO store_uploads (upload_id, session, size, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (upload_id) DO UPDATE SET session = excluded.session, size = excluded.size,"
            " updated_at = excluded.updated_at",
            (upload_id, session, size, _now()),
        )

    async def save_store_part(self, upload_id: str, part: StorePart) -> None:
        self._db.execute(
            "INSERT INTO store_upload_parts (upload_id, number, etag, size) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (upload_id, number) DO UPDATE SET etag = excluded.etag, size = excluded.size",
            (upload_id, part.number, part.etag, part.size),
        )

    async def delete_store_upload(self, upload_id: str) -> None:
        self._db.execute("DELETE FROM store_upload_parts WHERE upload_id = ?", (upload_id,))
        self._db.execute("DELETE FROM store_uploads WHERE upload_id = ?", (upload_id,))

    async def store_upload_ids(self) -> dict[str, float]:
        rows = self._db.execute("SELECT upload_id, updated_at FROM store_uploads").fetchall()
        return {row[0]: float(row[1]) for row in rows}

    async def store_blob_key(self, digest: str) -> str | None:
        row = self._db.execute("SELECT key FROM store_blobs WHERE digest = ?", (digest,)).fetchone()
        return None if row is None else str(row[0])

    async def claim_store_blob_key(self, digest: str, key: str) -> str:
        self._db.execute(
            "INSERT INTO store_blobs (digest, key) VALUES (?, ?) ON CONFLICT (digest) DO NOTHING", (digest, key))
        standing = await self.store_blob_key(digest)
        assert standing is not None
        return standing

    async def delete_store_blob_key(self, digest: str) -> None:
        self._db.execute("DELETE FROM store_blobs WHERE digest = ?", (digest,))

    async def store_blob_keys(self) -> set[str]:
        return {str(row[0]) for row in self._db.execute("SELECT key FROM store_blobs").fetchall()}

    # job leases

    async def acquire_lease(self, name: str, holder: str, seconds: float) -> bool:
        now = time.time()
        cursor = self._db.execute(
            "INSERT INTO job_leases (name, holder, expires_at) VALUES (?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at"
            " WHERE job_leases.holder = excluded.holder OR job_leases.expires_at < ?",
            (name, holder, now + seconds, now),
        )
        return cursor.rowcount == 1

    async def release_lease(self, name: str, holder: str) -> None:
        self._db.execute("DELETE FROM job_leases WHERE name = ? AND holder = ?", (name, holder))

    # events

    async def add_event(self, event: Event, deliver_to: Sequence[str] = ()) -> int:
        return insert_event(self._db, event, deliver_to)

    async def add_events(self, events: Sequence[tuple[Event, Sequence[str]]]) -> None:
        insert_events(self._db, events)

    async def list_events(self, where: EventFilter, limit: int, before: int | None = None) -> list[LoggedEvent]:
        return select_events(self._db, where, limit, before)

    async def purge_events(self, older_than: float) -> int:
        return delete_events(self._db, older_than)

    # the outbox of webhook deliveries, and the endpoints added at run time

    async def next_delivery(self, endpoint: str) -> NextDelivery | None:
        return sqlite_webhooks.next_delivery(self._db, endpoint)

    async def claim_deliveries(
        self, endpoint: str, holder: str, now: float, lease_until: float, limit: int,
    ) -> list[Delivery]:
        return sqlite_webhooks.claim_deliveries(self._db, endpoint, holder, now, lease_until, limit, self._decoded)

    async def finish_deliveries(
        self, delivery_ids: Sequence[int], holder: str, *, delivered: bool, status: int | None, error: str | None,
        retry_at: float, max_attempts: int, now: float,
    ) -> int:
        return sqlite_webhooks.finish_deliveries(
            self._db, delivery_ids, holder, delivered=delivered, status=status, error=error, retry_at=retry_at,
            max_attempts=max_attempts, now=now,
        )

    async def release_deliveries(self, delivery_ids: Sequence[int], holder: str) -> None:
        sqlite_webhooks.release_deliveries(self._db, delivery_ids, holder)

    async def deliveries(
        self, endpoint: str | None, state: DeliveryState | None, limit: int, before: int | None,
    ) -> list[Delivery]:
        return sqlite_webhooks.deliveries(self._db, endpoint, state, limit, before)

    async def redeliver(self, delivery_id: int, now: float) -> Delivery | None:
        return sqlite_webhooks.redeliver(self._db, delivery_id, now)

    async def webhook_endpoints(self) -> Sequence[tuple[str, str]]:
        return sqlite_webhooks.webhook_endpoints(self._db)

    async def add_webhook_endpoint(self, name: str, settings: str, now: float) -> bool:
        return sqlite_webhooks.add_webhook_endpoint(self._db, name, settings, now)

    async def remove_webhook_endpoint(self, name: str, now: float) -> bool:
        return sqlite_webhooks.remove_webhook_endpoint(self._db, name, now)
