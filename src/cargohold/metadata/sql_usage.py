"""Namespace quotas and usage figures in the metadata database (migration ``0017_usage_quotas.sql``), on any
:class:`~.sql.SqlDatabase` (see :mod:`cargohold.quotas` and :mod:`cargohold.usage` for what they mean).

A quota's ``used_bytes`` is kept exact inside each manifest push and delete of its namespace: the unit of
work locks the quota row (``FOR UPDATE``; SQLite's one writer serializes them anyway) before it reads what
the namespace references, so concurrent pushes into one namespace are checked one after the other. A
namespace without a quota costs one primary-key read. Setting a new quota computes ``used_bytes`` under the
table's exclusive lock: it waits for every push that read the quotas table (and found no row) to commit,
and every later push sees the new row. The usage refresh recomputes every quota's figure too, each under
its row lock, so a path that removed manifests without going through :func:`release_manifest` (none
should) is corrected within one refresh.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Final

from ..access_model import namespace_of
from ..quotas import Quota, QuotaCharge, QuotaUnknown, check_namespace, namespace_range, parse_limit
from ..usage import Usage, UsageReport
from .sql import SqlDatabase

log: Final = logging.getLogger("cargohold.usage")

_QUOTA_COLUMNS: Final = "namespace, limit_bytes, used_bytes, created_by, updated_at"
_QUOTAS: Final = "namespace_quotas"
#: repositories whose name lies in a namespace's range (see :func:`~cargohold.quotas.namespace_range`)
_IN_NAMESPACE: Final = "SELECT id FROM repositories WHERE name >= ? AND name < ?"


def _now() -> int:
    return int(time.time())


def _quota(row: Sequence[Any]) -> Quota:
    return Quota(row[0], int(row[1]), int(row[2]), row[3], int(row[4]))


# quotas, as the administrator sees them


async def quotas(db: SqlDatabase) -> list[Quota]:
    return [_quota(row) for row in await db.fetchall(f"SELECT {_QUOTA_COLUMNS} FROM {_QUOTAS} ORDER BY namespace")]


async def set_quota(db: SqlDatabase, namespace: str, limit: object, created_by: str | None) -> Quota:
    """Set (or change) a namespace's limit; its usage is computed anew."""
    check_namespace(namespace)
    limit_bytes = parse_limit(limit)
    async with db.atomic():
        await db.lock_exclusive(_QUOTAS)
        used = await namespace_referenced_bytes(db, namespace)
        row = await db.fetchone(
            f"INSERT INTO {_QUOTAS} ({_QUOTA_COLUMNS}) VALUES (?, ?, ?, ?, ?) ON CONFLICT (namespace) DO UPDATE"
            " SET limit_bytes = excluded.limit_bytes, used_bytes = excluded.used_bytes,"
            f" created_by = excluded.created_by, updated_at = excluded.updated_at RETURNING {_QUOTA_COLUMNS}",
            (namespace, limit_bytes, used, created_by, _now()),
        )
    assert row is not None
    return _quota(row)


async def clear_quota(db: SqlDatabase, namespace: str) -> Quota:
    row = await db.fetchone(f"DELETE FROM {_QUOTAS} WHERE namespace = ? RETURNING {_QUOTA_COLUMNS}", (namespace,))
    if row is None:
        raise QuotaUnknown(f"namespace {namespace} has no quota")
    return _quota(row)


async def namespace_referenced_bytes(db: SqlDatabase, namespace: str) -> int:
    """Exactly what the namespace uses now: its manifests' distinct referenced blobs, and the manifests."""
    low, high = namespace_range(namespace)
    blobs = await db.fetchone(
        "SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE b.digest IN (SELECT mr.target_digest"
        f" FROM manifest_references mr WHERE mr.repository_id IN ({_IN_NAMESPACE}))",
        (low, high),
    )
    manifests = await db.fetchone(
        f"SELECT COALESCE(SUM(length(content)), 0) FROM manifests WHERE repository_id IN ({_IN_NAMESPACE})",
        (low, high),
    )
    assert blobs is not None and manifests is not None
    return int(blobs[0]) + int(manifests[0])


# quotas, inside a manifest push's or delete's unit of work


async def _locked_quota(db: SqlDatabase, namespace: str) -> Quota | None:
    row = await db.fetchone(f"SELECT {_QUOTA_COLUMNS} FROM {_QUOTAS} WHERE namespace = ?{db.for_update}",
                            (namespace,))
    return None if row is None else _quota(row)


async def _unheld_bytes(db: SqlDatabase, namespace: str, digests: Sequence[str],
                        but: tuple[int, str] | None = None) -> int:
    """The bytes of those of ``digests`` that are blobs no manifest of the namespace references (other than
    ``but``: a repository id and a manifest digest)."""
    if not digests:
        return 0
    among, args = db.any_of(sorted(set(digests)))
    other = " AND NOT (mr.repository_id = ? AND mr.manifest_digest = ?)" if but is not None else ""
    row = await db.fetchone(
        f"SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE b.digest {among} AND NOT EXISTS ("
        f"SELECT 1 FROM manifest_references mr WHERE mr.target_digest = b.digest{other}"
        f" AND mr.repository_id IN ({_IN_NAMESPACE}))",
        (*args, *(but or ()), *namespace_range(namespace)),
    )
    assert row is not None
    return int(row[0])


async def charge_manifest(db: SqlDatabase, repository: str, repository_id: int | None, digest: str,
                          size: int, references: Sequence[str]) -> QuotaCharge | None:
    """Lock the quota of the repository's namespace and say what storing the manifest would add to its use;
    None when no quota covers the repository. The caller adds ``needed`` with :func:`add_used` if it stores it."""
    namespace = namespace_of(repository)
    if namespace is None:
        return None
    quota = await _locked_quota(db, namespace)
    if quota is None:
        return None
    if repository_id is not None and await db.fetchone(
            "SELECT 1 FROM manifests WHERE repository_id = ? AND digest = ?", (repository_id, digest)):
        return QuotaCharge(quota, 0)  # stored already, with everything it references
    return QuotaCharge(quota, size + await _unheld_bytes(db, namespace, references))


async def add_used(db: SqlDatabase, namespace: str, delta: int) -> None:
    if delta:
        await db.write(f"UPDATE {_QUOTAS} SET used_bytes = used_bytes + ? WHERE namespace = ?", (delta, namespace))


async def release_manifest(db: SqlDatabase, repository: str, repository_id: int, digest: str) -> int:
    """Before a manifest is deleted: take what only it used off its namespace's quota; the bytes freed."""
    namespace = namespace_of(repository)
    if namespace is None:
        return 0
    # the manifest's row first, then the quota's: a push locks the rows it references before the quota
    stored = await db.fetchone(
        f"SELECT length(content) FROM manifests WHERE repository_id = ? AND digest = ?{db.for_update}",
        (repository_id, digest))
    if stored is None or await _locked_quota(db, namespace) is None:
        return 0
    targets = [row[0] for row in await db.fetchall(
        "SELECT target_digest FROM manifest_references WHERE repository_id = ? AND manifest_digest = ?",
        (repository_id, digest))]
    freed = int(stored[0]) + await _unheld_bytes(db, namespace, targets, but=(repository_id, digest))
    await add_used(db, namespace, -freed)
    return freed


async def reconcile_quotas(db: SqlDatabase) -> None:
    """Recompute each quota's use, each under its row lock (short transactions: pushes wait little)."""
    for quota in await quotas(db):
        async with db.atomic():
            if await _locked_quota(db, quota.namespace) is None:
                continue  # cleared meanwhile
            used = await namespace_referenced_bytes(db, quota.namespace)
            changed = await db.write(f"UPDATE {_QUOTAS} SET used_bytes = ? WHERE namespace = ? AND used_bytes <> ?",
                                     (used, quota.namespace, used))
        if changed:
            log.warning("a quota's use was corrected", extra={"namespace": quota.namespace, "used": used})


# usage figures

#: per repository: each distinct blob its manifests reference, with how many repositories reference it
_REPOSITORY_BLOBS: Final = (
    "WITH refs AS (SELECT DISTINCT mr.repository_id AS rid, b.digest AS digest, b.size AS size"
    " FROM manifest_references mr JOIN blobs b ON b.digest = mr.target_digest),"
    " holders AS (SELECT digest, COUNT(*) AS n FROM refs GROUP BY digest)"
    " SELECT refs.rid, SUM(refs.size), SUM(CASE WHEN holders.n = 1 THEN refs.size ELSE 0 END)"
    " FROM refs JOIN holders ON holders.digest = refs.digest GROUP BY refs.rid"
)
#: per repository: the blobs linked to it that none of its manifests reference
_REPOSITORY_UNREFERENCED: Final = (
    "SELECT rb.repository_id, SUM(b.size) FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest"
    " WHERE NOT EXISTS (SELECT 1 FROM manifest_references mr"
    " WHERE mr.target_digest = rb.digest AND mr.repository_id = rb.repository_id) GROUP BY rb.repository_id"
)
_REPOSITORY_MANIFESTS: Final = (
    "SELECT repository_id, COUNT(*), SUM(length(content)), MAX(created_at) FROM manifests GROUP BY repository_id"
)
_REPOSITORY_TAGS: Final = "SELECT repository_id, COUNT(*), MAX(updated_at) FROM tags GROUP BY repository_id"
#: a repository's holder: its namespace, or (one component) itself; '/' never begins a namespace
_HOLDER: Final = "COALESCE(u.namespace, '/' || u.repository)"
#: per namespace: each distinct blob its repositories' manifests reference, with how many holders reference it
_NAMESPACE_BLOBS: Final = (
    f"WITH refs AS (SELECT DISTINCT {_HOLDER} AS holder, b.digest AS digest, b.size AS size"
    " FROM manifest_references mr JOIN repository_usage u ON u.repository_id = mr.repository_id"
    " JOIN blobs b ON b.digest = mr.target_digest),"
    " holders AS (SELECT digest, COUNT(*) AS n FROM refs GROUP BY digest)"
    " SELECT refs.holder, SUM(refs.size), SUM(CASE WHEN holders.n = 1 THEN refs.size ELSE 0 END)"
    " FROM refs JOIN holders ON holders.digest = refs.digest WHERE refs.holder NOT LIKE '/%' GROUP BY refs.holder"
)
_NAMESPACE_UNREFERENCED: Final = (
    "WITH linked AS (SELECT DISTINCT u.namespace AS namespace, rb.digest AS digest FROM repository_blobs rb"
    " JOIN repository_usage u ON u.repository_id = rb.repository_id WHERE u.namespace IS NOT NULL),"
    " referenced AS (SELECT DISTINCT u.namespace AS namespace, mr.target_digest AS digest"
    " FROM manifest_references mr JOIN repository_usage u ON u.repository_id = mr.repository_id"
    " WHERE u.namespace IS NOT NULL)"
    " SELECT linked.namespace, SUM(b.size) FROM linked JOIN blobs b ON b.digest = linked.digest"
    " WHERE NOT EXISTS (SELECT 1 FROM referenced"
    " WHERE referenced.namespace = linked.namespace AND referenced.digest = linked.digest)"
    " GROUP BY linked.namespace"
)
_FIGURES: Final = ("total_bytes, exclusive_bytes, shared_bytes, manifest_bytes, unreferenced_bytes, manifests, tags,"
                   " last_push_at, last_pull_at, computed_at")


async def _by_id(db: SqlDatabase, text: str) -> dict[Any, tuple[Any, ...]]:
    return {row[0]: tuple(row[1:]) for row in await db.fetchall(text)}


async def _last_pulls(db: SqlDatabase) -> dict[int, int]:
    """Repository id -> when a manifest of it was last pulled (as of the workers' last flush of pull times)."""
    rows = await db.fetchall("SELECT repository_id, MAX(pulled_at) FROM manifest_pulls GROUP BY repository_id")
    return {int(row[0]): int(row[1]) for row in rows}


def _latest(*times: Any) -> int | None:
    known = [int(t) for t in times if t is not None]
    return max(known) if known else None


async def refresh_usage(db: SqlDatabase) -> int:
    """Compute every repository's and namespace's figures anew, in one transaction; when they were computed."""
    now = _now()
    async with db.atomic():
        await db.hold_locks(["usage-refresh"])  # two refreshes at once would insert the same rows
        repositories = await db.fetchall("SELECT id, name FROM repositories")
        blobs = await _by_id(db, _REPOSITORY_BLOBS)
        unreferenced = await _by_id(db, _REPOSITORY_UNREFERENCED)
        manifests = await _by_id(db, _REPOSITORY_MANIFESTS)
        tags = await _by_id(db, _REPOSITORY_TAGS)
        pulls = await _last_pulls(db)
        rows = []
        for repository_id, name in repositories:
            total, exclusive = (int(v) for v in blobs.get(repository_id, (0, 0)))
            count, manifest_bytes, pushed = manifests.get(repository_id, (0, 0, None))
            tag_count, tagged = tags.get(repository_id, (0, None))
            rows.append((
                repository_id, name, namespace_of(name), total + int(manifest_bytes),
                exclusive + int(manifest_bytes), total - exclusive, int(manifest_bytes),
                int(unreferenced.get(repository_id, (0,))[0]), int(count), int(tag_count), _latest(pushed, tagged),
                pulls.get(repository_id), now,
            ))
        await db.write("DELETE FROM repository_usage")
        await db.write_many(
            f"INSERT INTO repository_usage (repository_id, repository, namespace, {_FIGURES})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows,
        )
        namespace_blobs = await _by_id(db, _NAMESPACE_BLOBS)
        namespace_unreferenced = await _by_id(db, _NAMESPACE_UNREFERENCED)
        sums: dict[str, list[Any]] = {}
        for row in rows:
            if row[2] is None:
                continue
            # repositories, manifest bytes, manifests, tags, last push, last pull
            found = sums.setdefault(row[2], [0, 0, 0, 0, None, None])
            found[0:4] = [found[0] + 1, found[1] + row[6], found[2] + row[8], found[3] + row[9]]
            found[4:6] = [_latest(found[4], row[10]), _latest(found[5], row[11])]
        namespace_rows = []
        for namespace, (count, manifest_bytes, manifest_count, tag_count, pushed, pulled) in sorted(sums.items()):
            total, exclusive = (int(v) for v in namespace_blobs.get(namespace, (0, 0)))
            namespace_rows.append((
                namespace, count, total + manifest_bytes, exclusive + manifest_bytes, total - exclusive,
                manifest_bytes, int(namespace_unreferenced.get(namespace, (0,))[0]), manifest_count, tag_count,
                pushed, pulled, now,
            ))
        await db.write("DELETE FROM namespace_usage")
        await db.write("DELETE FROM usage_refreshes")
        await db.write("INSERT INTO usage_refreshes (computed_at) VALUES (?)", (now,))
        await db.write_many(
            f"INSERT INTO namespace_usage (namespace, repositories, {_FIGURES})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", namespace_rows,
        )
    return now


def _figures(name: str, namespace: str | None, row: Sequence[Any], repositories: int | None = None) -> Usage:
    total, exclusive, shared, manifest_bytes, unreferenced, manifests, tags, pushed, pulled, computed = row
    return Usage(
        name, namespace, int(total), int(exclusive), int(shared), int(manifest_bytes), int(unreferenced),
        int(manifests), int(tags), None if pushed is None else int(pushed), None if pulled is None else int(pulled),
        int(computed), repositories,
    )


async def usage_report(db: SqlDatabase, name: str | None = None) -> UsageReport:
    """The figures of every namespace and repository; of one namespace and its repositories; or of one
    repository (a name of one component may be both a namespace and a repository)."""
    namespace_where, repository_where = "", ""
    namespace_args: tuple[str, ...] = ()
    repository_args: tuple[str, ...] = ()
    if name is not None and "/" in name:
        namespace_where, repository_where, repository_args = " WHERE FALSE", " WHERE repository = ?", (name,)
    elif name is not None:
        namespace_where, namespace_args = " WHERE namespace = ?", (name,)
        repository_where, repository_args = " WHERE namespace = ? OR repository = ?", (name, name)
    namespaces = [
        _figures(row[0], None, row[2:], int(row[1])) for row in await db.fetchall(
            f"SELECT namespace, repositories, {_FIGURES} FROM namespace_usage{namespace_where} ORDER BY namespace",
            namespace_args)
    ]
    repositories = [
        _figures(row[0], row[1], row[2:]) for row in await db.fetchall(
            f"SELECT repository, namespace, {_FIGURES} FROM repository_usage{repository_where} ORDER BY repository",
            repository_args)
    ]
    computed = await db.fetchone("SELECT computed_at FROM usage_refreshes")
    return UsageReport(None if computed is None else int(computed[0]), namespaces, repositories)
