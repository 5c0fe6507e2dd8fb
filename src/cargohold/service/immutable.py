"""Enforcing immutable tag rules (:mod:`cargohold.immutable_tags`) inside a push's or a delete's unit of work.

Each check reads the rules as the unit of work's first statement and holds a lock on what it
protects before it reads the tags (see :mod:`cargohold.metadata.sql_immutable`), so a rule
added, or a tag pushed, concurrently cannot slip between the check and the write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errcodes import Denied
from ..immutable_tags import ImmutableRule, first_match
from ..metadata.store import MetadataQueries


def _tag_lock(repository: str, tag: str) -> str:
    return f"immutable-tag\0{repository}\0{tag}"


def _manifest_lock(repository: str, digest: str) -> str:
    return f"immutable-manifest\0{repository}\0{digest}"


def _denied(rule: ImmutableRule, repository: str, tag: str, what: str, **detail: str) -> Denied:
    return Denied(
        f"tag {tag!r} of {repository} is protected by {rule}: it cannot be {what}",
        detail={"repository": repository, "tag": tag, "rule": rule.to_json(), **detail},
    )


async def protected_tags(
    tx: MetadataQueries, repository: str, tags: Sequence[str], digest: str,
) -> dict[str, ImmutableRule]:
    """The rule protecting each of ``tags`` that a push of ``digest`` would set, with their locks held."""
    if not tags:  # a push by digest alone (an index's children) moves no tag
        return {}
    rules = await tx.immutable_rules()
    found = {tag: rule for tag in tags if (rule := first_match(rules, repository, tag)) is not None}
    if found:
        await tx.hold_locks([*(_tag_lock(repository, tag) for tag in found), _manifest_lock(repository, digest)])
    return found


def check_push(protected: Mapping[str, ImmutableRule], repository: str, previous: Mapping[str, str],
               digest: str) -> None:
    """DENIED if the push would move a protected tag to another digest (the same digest again is fine)."""
    for tag, rule in protected.items():
        current = previous.get(tag)
        if current is not None and current != digest:
            raise _denied(rule, repository, tag, f"moved from {current} to another digest", digest=current)


async def check_tag_delete(tx: MetadataQueries, repository: str, repository_id: int, tag: str) -> None:
    """DENIED if ``tag`` exists and a rule protects it."""
    rule = first_match(await tx.immutable_rules(), repository, tag)
    if rule is None:
        return
    await tx.hold_locks([_tag_lock(repository, tag)])
    if await tx.tag_targets(repository_id, [tag]):
        raise _denied(rule, repository, tag, "deleted")


async def check_manifest_delete(tx: MetadataQueries, repository: str, repository_id: int, digest: str) -> None:
    """DENIED if a protected tag points at the manifest (deleting it would delete the tag)."""
    rules = [rule for rule in await tx.immutable_rules() if rule.covers_repository(repository)]
    if not rules:
        return
    await tx.hold_locks([_manifest_lock(repository, digest)])
    for tag in await tx.manifest_tags(repository_id, digest):
        rule = first_match(rules, repository, tag)
        if rule is not None:
            raise _denied(rule, repository, tag, f"deleted with the manifest {digest} it names", digest=digest)
