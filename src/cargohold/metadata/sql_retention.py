"""What retention reads of one repository, on any :class:`~.sql.SqlDatabase`: its tags with when each was
pushed and its manifest last pulled, its manifests with when each was pushed, and which of them an index
in the repository lists."""

from __future__ import annotations

from .sql import SqlDatabase
from .store import RetentionManifest, RetentionTag, RetentionView


async def repository_view(db: SqlDatabase, repository_id: int) -> RetentionView:
    tags = await db.fetchall(
        "SELECT t.name, t.manifest_digest, t.updated_at, p.pulled_at FROM tags t"
        " LEFT JOIN manifest_pulls p ON p.repository_id = t.repository_id AND p.digest = t.manifest_digest"
        " WHERE t.repository_id = ? ORDER BY t.name",
        (repository_id,),
    )
    manifests = await db.fetchall(
        "SELECT digest, media_type, created_at, subject_digest FROM manifests WHERE repository_id = ? ORDER BY digest",
        (repository_id,),
    )
    children = await db.fetchall(
        "SELECT r.manifest_digest, r.target_digest FROM manifest_references r"
        " JOIN manifests m ON m.repository_id = r.repository_id AND m.digest = r.target_digest"
        " WHERE r.repository_id = ? ORDER BY r.manifest_digest, r.target_digest",
        (repository_id,),
    )
    return RetentionView(
        tags=[RetentionTag(row[0], row[1], int(row[2]), None if row[3] is None else int(row[3])) for row in tags],
        manifests=[RetentionManifest(row[0], row[1], int(row[2]), row[3]) for row in manifests],
        children=[(row[0], row[1]) for row in children],
    )


async def is_listed(db: SqlDatabase, repository_id: int, digest: str) -> bool:
    """Whether a manifest of the repository lists ``digest`` (an index's child)."""
    row = await db.fetchone(
        "SELECT 1 FROM manifest_references WHERE repository_id = ? AND target_digest = ? LIMIT 1",
        (repository_id, digest),
    )
    return row is not None
