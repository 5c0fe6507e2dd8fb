"""The SQL of garbage collection (:class:`~.gc_store.GcStore`): the review queues that changes write in their
own transaction, and what a collection reads, locks and deletes (the rules are in :mod:`cargohold.service.gc`).

A review row is the lock a collection and a change that queues it share: a change writes (upserts) the row
first in its transaction, a collection claims rows with ``FOR UPDATE SKIP LOCKED`` (SQLite's one writer
serializes both already), so the one that comes second waits for the other to commit, then reads what it
left.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from .gc_store import GcRunRecord, ObjectDeletion
from .sql import SqlDatabase

_LATER = "CASE WHEN excluded.queued_at > {t}.queued_at THEN excluded.queued_at ELSE {t}.queued_at END"
QUEUE_MANIFEST = (
    "INSERT INTO gc_manifest_review (repository_id, digest, queued_at) VALUES (?, ?, ?)"
    " ON CONFLICT (repository_id, digest) DO UPDATE SET queued_at = " + _LATER.format(t="gc_manifest_review")
)
QUEUE_BLOB = (
    "INSERT INTO gc_blob_review (digest, queued_at) VALUES (?, ?)"
    " ON CONFLICT (digest) DO UPDATE SET queued_at = " + _LATER.format(t="gc_blob_review")
)


async def queue_manifests(db: SqlDatabase, repository_id: int, digests: Iterable[str], now: int) -> None:
    await db.write_many(QUEUE_MANIFEST, [(repository_id, digest, now) for digest in sorted(set(digests))])


async def queue_blobs(db: SqlDatabase, digests: Iterable[str], now: int) -> None:
    await db.write_many(QUEUE_BLOB, [(digest, now) for digest in sorted(set(digests))])


async def queue_pushed(db: SqlDatabase, repository_id: int, digest: str, tags: Sequence[str], now: int) -> None:
    """A manifest push: the manifest itself (untagged, or tagged until a tag moves) and the manifests its
    tags pointed at before, in one statement (the first of the push: see the module docstring)."""
    if not tags:
        await db.write(QUEUE_MANIFEST, (repository_id, digest, now))
        return
    among, args = db.any_of(list(tags))
    await db.write(
        "INSERT INTO gc_manifest_review (repository_id, digest, queued_at)"
        " SELECT CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS BIGINT) WHERE 1 = 1"
        " UNION SELECT repository_id, manifest_digest, ? FROM tags"
        f" WHERE repository_id = ? AND name {among} AND manifest_digest <> ?"
        " ORDER BY 1, 2"  # rows locked in one order: two pushes that queue the same ones cannot deadlock
        " ON CONFLICT (repository_id, digest) DO UPDATE SET queued_at = " + _LATER.format(t="gc_manifest_review"),
        (repository_id, digest, now, now, repository_id, *args, digest),
    )


async def queue_untagged(db: SqlDatabase, repository_id: int, tag: str, now: int) -> None:
    """The manifest a tag points at, before the tag is deleted."""
    await db.write(
        "INSERT INTO gc_manifest_review (repository_id, digest, queued_at)"
        " SELECT repository_id, manifest_digest, ? FROM tags WHERE repository_id = ? AND name = ?"
        " ON CONFLICT (repository_id, digest) DO UPDATE SET queued_at = " + _LATER.format(t="gc_manifest_review"),
        (now, repository_id, tag),
    )


async def unreferenced_by(db: SqlDatabase, repository_id: int, digest: str) -> tuple[list[str], list[str]]:
    """What deleting a manifest leaves to review: (manifests of its repository: its children and referrers;
    blobs: the other digests it references, and the empty layer of the schema 1 manifests made from it)."""
    targets = {row[0] for row in await db.fetchall(
        "SELECT target_digest FROM manifest_references WHERE repository_id = ? AND manifest_digest = ?",
        (repository_id, digest))}
    children: set[str] = set()
    if targets:
        among, args = db.any_of(sorted(targets))
        children = {row[0] for row in await db.fetchall(
            f"SELECT digest FROM manifests WHERE repository_id = ? AND digest {among}", (repository_id, *args))}
    referrers = [row[0] for row in await db.fetchall(
        "SELECT digest FROM manifests WHERE repository_id = ? AND subject_digest = ?", (repository_id, digest))]
    blobs = targets - children
    if await db.fetchone("SELECT 1 FROM generated_manifests WHERE repository_id = ? AND source_digest = ? LIMIT 1",
                         (repository_id, digest)):
        from ..formats.schema1_image import EMPTY_LAYER_DIGEST

        blobs.add(str(EMPTY_LAYER_DIGEST))
    return sorted(children | set(referrers)), sorted(blobs)


async def delete_manifest_rows(db: SqlDatabase, repository_id: int, digest: str) -> bool:
    """Delete a manifest with its tags, references and generated manifests; False if it was not there."""
    if not await db.write("DELETE FROM manifests WHERE repository_id = ? AND digest = ?", (repository_id, digest)):
        return False
    for statement in (
        "DELETE FROM tags WHERE repository_id = ? AND manifest_digest = ?",
        "DELETE FROM manifest_pulls WHERE repository_id = ? AND digest = ?",
        "DELETE FROM manifest_references WHERE repository_id = ? AND manifest_digest = ?",
        "DELETE FROM generated_manifests WHERE repository_id = ? AND source_digest = ?",
    ):
        await db.write(statement, (repository_id, digest))
    return True


# what a collection reads


async def due_manifests(
    db: SqlDatabase, cutoff: int, after: tuple[int, str], limit: int, claim: bool,
) -> list[tuple[int, str]]:
    rows = await db.fetchall(
        "SELECT repository_id, digest FROM gc_manifest_review WHERE queued_at <= ?"
        " AND (repository_id > ? OR (repository_id = ? AND digest > ?)) ORDER BY repository_id, digest LIMIT ?"
        + (db.for_update_skip_locked if claim else ""),
        (cutoff, after[0], after[0], after[1], limit),
    )
    return [(int(row[0]), str(row[1])) for row in rows]


async def claim_manifest(db: SqlDatabase, repository_id: int, digest: str, cutoff: int) -> bool:
    """Lock one due review row (False: gone, not due, or held by a change that queues it)."""
    return await db.fetchone(
        "SELECT 1 FROM gc_manifest_review WHERE repository_id = ? AND digest = ? AND queued_at <= ?"
        + db.for_update_skip_locked, (repository_id, digest, cutoff)) is not None


async def due_blobs(db: SqlDatabase, cutoff: int, after: str, limit: int, claim: bool) -> list[str]:
    rows = await db.fetchall(
        "SELECT digest FROM gc_blob_review WHERE queued_at <= ? AND digest > ? ORDER BY digest LIMIT ?"
        + (db.for_update_skip_locked if claim else ""),
        (cutoff, after, limit),
    )
    return [str(row[0]) for row in rows]


async def manifest_subject(
    db: SqlDatabase, repository_id: int, digest: str, lock: bool,
) -> tuple[bool | None, str | None]:
    """(whether the manifest is stored, its subject); ``lock``: until the collection's transaction ends, and
    None for "stored" while another transaction holds the row (an index push that checked it: a collection
    that waited for it could close a cycle of waits with that push, which then waits for the review row)."""
    text = "SELECT subject_digest FROM manifests WHERE repository_id = ? AND digest = ?"
    row = await db.fetchone(text + (db.for_update_skip_locked if lock else ""), (repository_id, digest))
    if row is None and lock and db.for_update_skip_locked and await db.fetchone(text, (repository_id, digest)):
        return None, None
    return (False, None) if row is None else (True, row[0])


async def is_tagged(db: SqlDatabase, repository_id: int, digest: str) -> bool:
    return await db.fetchone(
        "SELECT 1 FROM tags WHERE repository_id = ? AND manifest_digest = ? LIMIT 1", (repository_id, digest)
    ) is not None


async def referencing(db: SqlDatabase, repository_id: int, digest: str) -> list[str]:
    """The manifests of a repository that reference ``digest`` (a parent index, a blob's users)."""
    rows = await db.fetchall(
        "SELECT manifest_digest FROM manifest_references WHERE target_digest = ? AND repository_id = ?",
        (digest, repository_id))
    return [str(row[0]) for row in rows]


async def referencing_anywhere(db: SqlDatabase, digest: str) -> list[tuple[int, str]]:
    rows = await db.fetchall(
        "SELECT repository_id, manifest_digest FROM manifest_references WHERE target_digest = ?", (digest,))
    return [(int(row[0]), str(row[1])) for row in rows]


async def generated_sources(db: SqlDatabase, repository_id: int) -> list[str]:
    rows = await db.fetchall(
        "SELECT DISTINCT source_digest FROM generated_manifests WHERE repository_id = ?", (repository_id,))
    return [str(row[0]) for row in rows]


async def committing(db: SqlDatabase, digest: str) -> bool:
    """An upload of ``digest`` whose commit began and has not ended (its bytes are on their way)."""
    return await db.fetchone(
        "SELECT 1 FROM uploads WHERE digest = ? AND completed = ? LIMIT 1", (digest, False)) is not None


async def blob_links(db: SqlDatabase, digest: str, lock: bool) -> tuple[int | None, list[int]]:
    """(the blob's size, None if no row; the repositories that link it), locked if ``lock``."""
    row = await db.fetchone("SELECT size FROM blobs WHERE digest = ?" + (db.for_update if lock else ""), (digest,))
    links = await db.fetchall(
        "SELECT repository_id FROM repository_blobs WHERE digest = ? ORDER BY repository_id"
        + (db.for_update if lock else ""), (digest,))
    return (None if row is None else int(row[0])), [int(link[0]) for link in links]


async def repository_names(db: SqlDatabase, ids: Iterable[int]) -> dict[int, str]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    among, args = db.any_of(wanted)
    rows = await db.fetchall(f"SELECT id, name FROM repositories WHERE id {among}", args)
    return {int(row[0]): str(row[1]) for row in rows}


# what a collection changes


async def drop_link(db: SqlDatabase, repository_id: int, digest: str) -> None:
    await db.write("DELETE FROM repository_blobs WHERE repository_id = ? AND digest = ?", (repository_id, digest))


async def delete_blob(db: SqlDatabase, digest: str, size: int, now: int) -> None:
    """The blob's row (and its object's), and its bytes queued for deletion."""
    row = await db.fetchone("DELETE FROM store_blobs WHERE digest = ? RETURNING key", (digest,))
    await db.write("DELETE FROM blobs WHERE digest = ?", (digest,))
    await db.write(
        "INSERT INTO gc_object_deletions (digest, storage_key, size, queued_at) VALUES (?, ?, ?, ?)",
        (digest, None if row is None else str(row[0]), size, now))


async def reviewed_manifest(db: SqlDatabase, repository_id: int, digest: str) -> None:
    await db.write("DELETE FROM gc_manifest_review WHERE repository_id = ? AND digest = ?", (repository_id, digest))


async def reviewed_blob(db: SqlDatabase, digest: str) -> None:
    await db.write("DELETE FROM gc_blob_review WHERE digest = ?", (digest,))


async def cancel_deletion(db: SqlDatabase, digest: str) -> None:
    """An upload of ``digest`` is about to place its bytes at the digest's path: a deletion by digest that is
    still queued would remove them (one by key removes other bytes: it stays)."""
    await db.write("DELETE FROM gc_object_deletions WHERE digest = ? AND storage_key IS NULL", (digest,))


async def object_deletions(db: SqlDatabase, keyed: bool, after: int, limit: int, claim: bool) -> list[ObjectDeletion]:
    rows = await db.fetchall(
        "SELECT id, digest, storage_key, size FROM gc_object_deletions"
        f" WHERE storage_key IS {'NOT ' if keyed else ''}NULL AND id > ? ORDER BY id LIMIT ?"
        + (db.for_update_skip_locked if claim else ""), (after, limit))
    return [ObjectDeletion(int(r[0]), str(r[1]), None if r[2] is None else str(r[2]), int(r[3])) for r in rows]


async def objects_deleted(db: SqlDatabase, ids: Sequence[int]) -> None:
    if ids:
        among, args = db.any_of(sorted(ids))
        await db.write(f"DELETE FROM gc_object_deletions WHERE id {among}", args)


async def object_failed(db: SqlDatabase, deletion_id: int, error: str) -> None:
    await db.write("UPDATE gc_object_deletions SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                   (error, deletion_id))


# runs


async def start_run(db: SqlDatabase, started: float, dry_run: bool) -> int:
    row = await db.fetchone("INSERT INTO gc_runs (started, dry_run) VALUES (?, ?) RETURNING id", (started, dry_run))
    assert row is not None
    return int(row[0])


#: runs the history keeps
KEPT_RUNS = 1000


async def finish_run(db: SqlDatabase, run: GcRunRecord) -> None:
    async with db.atomic():
        await db.write(
            "UPDATE gc_runs SET finished = ?, manifests = ?, blobs = ?, bytes_freed = ?, errors = ?, detail = ?"
            " WHERE id = ?",
            (run.finished, run.manifests, run.blobs, run.bytes_freed, run.errors, json.dumps(run.detail), run.id))
        await db.write("DELETE FROM gc_runs WHERE id <= ?", (run.id - KEPT_RUNS,))


async def runs(db: SqlDatabase, limit: int) -> list[GcRunRecord]:
    rows = await db.fetchall(
        "SELECT id, started, finished, dry_run, manifests, blobs, bytes_freed, errors, detail FROM gc_runs"
        " ORDER BY id DESC LIMIT ?", (limit,))
    found = []
    for r in rows:
        detail: dict[str, Any] = json.loads(r[8] or "{}")
        found.append(GcRunRecord(int(r[0]), float(r[1]), None if r[2] is None else float(r[2]), bool(r[3]),
                                 int(r[4]), int(r[5]), int(r[6]), int(r[7]), detail))
    return found
