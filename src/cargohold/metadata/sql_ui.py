"""What the web UI reads and keeps: its sessions (migration ``0022_ui_sessions.sql``) and the pages of
repositories and tags it lists, with what the registry knows of each.

Every list is one indexed page (``LIMIT`` after a cursor), so a page costs what it shows whatever the
repository or catalog holds. A repository's sizes and tag count come from the usage figures
(:mod:`cargohold.usage`), as of their last refresh; a tag's size is counted from its manifest's references
on the page shown.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from .sql import SqlDatabase

#: media types whose manifests list other manifests
INDEX_TYPES: Final = frozenset({
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
})


@dataclass(frozen=True, slots=True)
class UiSession:
    account: str
    credentials_generation: int
    csrf: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class RepositoryRow:
    name: str
    #: usage figures as of their last refresh; None until a refresh counted the repository
    exclusive_bytes: int | None
    shared_bytes: int | None
    tags: int | None
    #: when a tag was last set, and a manifest last pulled (as recorded so far): now
    last_push_at: int | None
    last_pull_at: int | None


@dataclass(frozen=True, slots=True)
class TagRow:
    name: str
    digest: str
    media_type: str
    #: the manifest's bytes, plus each distinct blob it (or, for an index, its children) references
    size: int
    pushed_at: int
    pulled_at: int | None
    #: ``os/architecture[/variant]`` of an index's children; empty for an image
    platforms: tuple[str, ...]


def like_pattern(text: str) -> str:
    """``%text%`` for ``LIKE ... ESCAPE '\\'``, its own ``%``, ``_`` and ``\\`` taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def platform_name(platform: object) -> str:
    """``os/architecture[/variant]`` of an index entry's ``platform`` ("" for none)."""
    if not isinstance(platform, dict):
        return ""
    parts = [platform.get("os"), platform.get("architecture"), platform.get("variant")]
    return "/".join(str(part) for part in parts if part)


def platforms_of(content: bytes) -> tuple[str, ...]:
    """The platforms an index's children name, in its order (what is not JSON or names none: none)."""
    try:
        document = json.loads(content)
    except ValueError:
        return ()
    children = document.get("manifests", []) if isinstance(document, dict) else []
    found = (platform_name(child.get("platform")) for child in children if isinstance(child, dict))
    return tuple(name for name in found if name)


class SqlUiStore:
    def __init__(self, db: SqlDatabase):
        # the database must be migrated already: the migrations create the table
        self._db = db

    # sessions

    async def create_session(self, session_id: str, session: UiSession, now: int) -> None:
        """Keep a new session, forgetting every expired one in the same step."""
        async with self._db.atomic():
            await self._db.write("DELETE FROM ui_sessions WHERE expires_at <= ?", (now,))
            await self._db.write(
                "INSERT INTO ui_sessions (id, account, credentials_generation, csrf, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (session_id, session.account, session.credentials_generation, session.csrf, now, session.expires_at),
            )

    async def session(self, session_id: str, now: int) -> UiSession | None:
        row = await self._db.fetchone(
            "SELECT account, credentials_generation, csrf, expires_at FROM ui_sessions WHERE id = ? AND expires_at > ?",
            (session_id, now),
        )
        return UiSession(row[0], int(row[1]), row[2], int(row[3])) if row is not None else None

    async def delete_session(self, session_id: str) -> None:
        await self._db.write("DELETE FROM ui_sessions WHERE id = ?", (session_id,))

    # listings

    async def repositories(
        self, after: str | None, limit: int, contains: str = "", namespace: str = "",
    ) -> list[RepositoryRow]:
        """A page of repositories by name after ``after``: those whose name contains ``contains`` and,
        given a namespace, those in it."""
        where, args = ["r.name > ?"], [after or ""]
        if contains:
            where.append("r.name LIKE ? ESCAPE '\\'")
            args.append(like_pattern(contains))
        if namespace:
            where.append("r.name LIKE ? ESCAPE '\\'")
            args.append(like_pattern(namespace.strip("/") + "/").removeprefix("%"))
        rows = await self._db.fetchall(
            # the times are read now (an index gives each); sizes and counts as of the last usage refresh
            "SELECT r.name, u.exclusive_bytes, u.shared_bytes, u.tags,"
            " (SELECT MAX(t.updated_at) FROM tags t WHERE t.repository_id = r.id),"
            " (SELECT MAX(p.pulled_at) FROM manifest_pulls p WHERE p.repository_id = r.id)"
            " FROM repositories r LEFT JOIN repository_usage u ON u.repository_id = r.id"
            f" WHERE {' AND '.join(where)} ORDER BY r.name LIMIT ?",
            (*args, limit),
        )
        return [RepositoryRow(*row) for row in rows]

    async def usage_computed_at(self) -> int | None:
        row = await self._db.fetchone("SELECT MAX(computed_at) FROM usage_refreshes")
        return None if row is None or row[0] is None else int(row[0])

    async def tags(
        self, repository: str, after: tuple[int, str] | str | None, limit: int, contains: str = "",
        by_push: bool = False,
    ) -> list[TagRow] | None:
        """A page of the repository's tags (None: no such repository): by name after the name ``after``,
        or newest push first after the ``(pushed_at, name)`` ``after``."""
        found = await self._db.fetchone("SELECT id FROM repositories WHERE name = ?", (repository,))
        if found is None:
            return None
        repository_id = int(found[0])
        where: list[str] = ["t.repository_id = ?"]
        args: list[object] = [repository_id]
        if by_push:
            if isinstance(after, tuple):
                where.append("(t.updated_at < ? OR (t.updated_at = ? AND t.name < ?))")
                args += [after[0], after[0], after[1]]
            order = "t.updated_at DESC, t.name DESC"
        else:
            if isinstance(after, str):
                where.append("t.name > ?")
                args.append(after)
            order = "t.name"
        if contains:
            where.append("t.name LIKE ? ESCAPE '\\'")
            args.append(like_pattern(contains))
        rows = await self._db.fetchall(
            "SELECT t.name, t.manifest_digest, m.media_type, m.content, t.updated_at, p.pulled_at"
            " FROM tags t JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest"
            " LEFT JOIN manifest_pulls p ON p.repository_id = t.repository_id AND p.digest = t.manifest_digest"
            f" WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?",
            (*args, limit),
        )
        sizes = await self._sizes(repository_id, {row[1]: len(bytes(row[3])) for row in rows})
        return [
            TagRow(name, digest, media_type, sizes.get(digest, 0), int(pushed), None if pulled is None else int(pulled),
                   platforms_of(bytes(content)) if media_type in INDEX_TYPES else ())
            for name, digest, media_type, content, pushed, pulled in rows
        ]

    async def _sizes(self, repository_id: int, manifests: dict[str, int]) -> dict[str, int]:
        """Each manifest's bytes and those of the distinct blobs it references, an index's children
        (their bytes and blobs) counted in."""
        direct = await self._references(repository_id, list(manifests))
        children = {target for targets in direct.values() for target, _, child in targets if child is not None}
        below = await self._references(repository_id, sorted(children)) if children else {}
        sizes: dict[str, int] = {}
        for digest, own in manifests.items():
            blobs: dict[str, int] = {}
            total = own
            for target, blob_size, child_size in direct.get(digest, []):
                if child_size is not None:
                    total += child_size
                    blobs.update((t, s) for t, s, _ in below.get(target, []) if s is not None)
                elif blob_size is not None:
                    blobs[target] = blob_size
            sizes[digest] = total + sum(blobs.values())
        return sizes

    async def _references(
        self, repository_id: int, digests: Sequence[str],
    ) -> dict[str, list[tuple[str, int | None, int | None]]]:
        """Per manifest: what it references, with the blob's size or the child manifest's size."""
        if not digests:
            return {}
        condition, values = self._db.any_of(digests)
        rows = await self._db.fetchall(
            "SELECT r.manifest_digest, r.target_digest, b.size, LENGTH(c.content) FROM manifest_references r"
            " LEFT JOIN blobs b ON b.digest = r.target_digest"
            " LEFT JOIN manifests c ON c.repository_id = r.repository_id AND c.digest = r.target_digest"
            f" WHERE r.repository_id = ? AND r.manifest_digest {condition}",
            (repository_id, *values),
        )
        found: dict[str, list[tuple[str, int | None, int | None]]] = {}
        for manifest, target, blob_size, child_size in rows:
            found.setdefault(manifest, []).append(
                (target, None if blob_size is None else int(blob_size), None if child_size is None else int(child_size))
            )
        return found

    async def close(self) -> None:
        await self._db.aclose()
