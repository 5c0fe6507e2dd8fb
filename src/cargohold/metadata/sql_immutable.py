"""Immutable tag rules in the metadata database (migration ``0015_immutable_tags.sql``), on any
:class:`~.sql.SqlDatabase`: the access store changes them, the registry store reads them inside a
manifest push's or delete's unit of work.

A change of the rules and a push cannot race. On SQLite the one writer (``BEGIN IMMEDIATE``) orders
them. On PostgreSQL, adding a rule takes the rules table's exclusive lock
(:meth:`~.sql.SqlDatabase.lock_exclusive`): it waits for every push or delete that has read the rules
(a read's lock lasts to its commit), and every one after it waits for it and reads the new rule; a
unit of work reads the rules first, before it holds any row lock, so that wait closes no cycle. The
tags (and manifests) a rule protects are serialized with :meth:`~.sql.SqlDatabase.hold_locks`: two
pushes of one protected tag, or a push and a delete of the manifest it names, run one after the other,
and the second reads what the first committed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

from ..immutable_tags import ImmutableRule, ImmutableRuleExists, ImmutableRuleUnknown, check_rule_patterns
from .sql import SqlDatabase

_COLUMNS: Final = "id, repository, tag, created_by, created_at"
_TABLE: Final = "immutable_tag_rules"


def _rule(row: Sequence[Any]) -> ImmutableRule:
    return ImmutableRule(int(row[0]), row[1], row[2], row[3], int(row[4]))


async def rules(db: SqlDatabase) -> list[ImmutableRule]:
    """Every rule, oldest first."""
    return [_rule(row) for row in await db.fetchall(f"SELECT {_COLUMNS} FROM {_TABLE} ORDER BY id")]


async def add_rule(db: SqlDatabase, repository: str, tag: str, created_by: str | None) -> ImmutableRule:
    check_rule_patterns(repository, tag)
    async with db.atomic():
        await db.lock_exclusive(_TABLE)
        row = await db.fetchone(
            f"INSERT INTO {_TABLE} (repository, tag, created_by, created_at) VALUES (?, ?, ?, ?)"
            f" ON CONFLICT (repository, tag) DO NOTHING RETURNING {_COLUMNS}",
            (repository, tag, created_by, int(time.time())),
        )
    if row is None:
        raise ImmutableRuleExists(f"a rule for repository {repository!r} and tag {tag!r} exists already")
    return _rule(row)


async def remove_rule(db: SqlDatabase, rule_id: int) -> ImmutableRule:
    row = await db.fetchone(f"DELETE FROM {_TABLE} WHERE id = ? RETURNING {_COLUMNS}", (rule_id,))
    if row is None:
        raise ImmutableRuleUnknown(f"no immutable tag rule {rule_id}")
    return _rule(row)


async def manifest_tags(db: SqlDatabase, repository_id: int, digest: str) -> list[str]:
    rows = await db.fetchall(
        "SELECT name FROM tags WHERE repository_id = ? AND manifest_digest = ? ORDER BY name", (repository_id, digest))
    return [row[0] for row in rows]
