"""Retention: the tags and untagged manifests the ``retention`` policies let go (:mod:`cargohold.config.retention`).

A run reads each repository a policy covers and plans (:func:`plan`, pure): the tags no keep rule keeps,
unless an immutable tag rule protects them (kept, and said so); then, if the policy deletes untagged
manifests, every manifest left with no tag that nothing kept holds: not a child of a kept index, not a
referrer of a kept subject (nor any referrer, unless ``delete_referrers``), not pushed within ``delay``.
A dry run reports the plan; a real run deletes it in order (tags, then each manifest before what it
lists or refers to) through :meth:`Manifests.expire`, the API's DELETE with its checks, audit entry and
webhook event, by the actor ``retention``. A target that changed since it was planned (a tag moved, a
manifest tagged again) is skipped and reported. Retention deletes rows; garbage collection frees the bytes.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ..config.retention import KeepTags, RetentionPolicy, RetentionSection
from ..digest import Digest
from ..errcodes import RegistryError
from ..events.origin import FixedOrigin, origin_scope
from ..immutable_tags import ImmutableRule, first_match
from ..metadata.store import MetadataStore, RetentionTag, RetentionView
from ..reference import DigestRef, TagRef
from .manifests import Manifests

#: who the audit log and the webhook events name for retention's deletes
RETENTION_ORIGIN: Final = FixedOrigin(actor="retention", actor_kind="system")


@dataclass(frozen=True, slots=True)
class Removal:
    repository: str
    kind: Literal["tag", "manifest"]
    #: the tag, or the manifest's digest
    target: str
    #: the manifest (the tag's, or itself)
    digest: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"repository": self.repository, "kind": self.kind, "target": self.target, "digest": self.digest,
                "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Protected:
    """A tag no keep rule keeps, kept because an immutable tag rule protects it."""

    repository: str
    tag: str
    digest: str
    rule: str

    def to_json(self) -> dict[str, Any]:
        return {"repository": self.repository, "tag": self.tag, "digest": self.digest, "rule": self.rule}


@dataclass
class RetentionReport:
    dry_run: bool
    started_at: float
    #: what a dry run would delete, or what a real run deleted, in order
    removals: list[Removal] = field(default_factory=list)
    protected: list[Protected] = field(default_factory=list)
    #: planned, not deleted: changed since (with why)
    skipped: list[tuple[Removal, str]] = field(default_factory=list)
    repositories: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run, "started_at": self.started_at, "repositories": self.repositories,
            "deleted" if not self.dry_run else "would_delete": [r.to_json() for r in self.removals],
            "protected": [p.to_json() for p in self.protected],
            "skipped": [{**r.to_json(), "skipped": why} for r, why in self.skipped],
        }


def _when(seconds: int | None) -> str:
    if seconds is None:
        return "never"
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _kept_by(rule: KeepTags, tags: Sequence[RetentionTag], now: float) -> set[str]:
    patterns = rule.compiled
    candidates = [t for t in tags if not patterns or any(p.search(t.name) for p in patterns)]
    if not rule.has_criteria:
        return {t.name for t in candidates}
    kept: set[str] = set()
    pushed_within, pulled_within = rule.within("pushed_within"), rule.within("pulled_within")
    if pushed_within is not None:
        kept |= {t.name for t in candidates if t.pushed_at >= now - pushed_within}
    if pulled_within is not None:
        kept |= {t.name for t in candidates if t.pulled_at is not None and t.pulled_at >= now - pulled_within}
    if rule.most_recently_pushed_count:
        newest = sorted(candidates, key=lambda t: (-t.pushed_at, t.name))
        kept |= {t.name for t in newest[:rule.most_recently_pushed_count]}
    if rule.most_recently_pulled_count:
        pulled = sorted((t for t in candidates if t.pulled_at is not None), key=lambda t: (-(t.pulled_at or 0), t.name))
        kept |= {t.name for t in pulled[:rule.most_recently_pulled_count]}
    return kept


def plan(
    repository: str, view: RetentionView, policy: RetentionPolicy, rules: list[ImmutableRule], now: float,
    delay: float,
) -> tuple[list[Removal], list[Protected]]:
    """What ``policy`` lets go of in one repository, in the order to delete it, and the tags only an
    immutable tag rule keeps."""
    removals: list[Removal] = []
    protected: list[Protected] = []
    kept_tags = {t.name for t in view.tags}
    if policy.keep_tags:
        kept_tags = set().union(*(_kept_by(rule, view.tags, now) for rule in policy.keep_tags))
    for tag in view.tags:
        if tag.name in kept_tags:
            continue
        rule = first_match(rules, repository, tag.name)
        if rule is not None:
            protected.append(Protected(repository, tag.name, tag.digest, str(rule)))
            kept_tags.add(tag.name)
            continue
        why = f"no keep rule keeps it (pushed {_when(tag.pushed_at)}, pulled {_when(tag.pulled_at)})"
        removals.append(Removal(repository, "tag", tag.name, tag.digest, why))
    if not policy.delete_untagged:
        return removals, protected
    tagged = {t.digest for t in view.tags if t.name in kept_tags}
    untagged_before = {m.digest for m in view.manifests} - {t.digest for t in view.tags}
    children: dict[str, list[str]] = {}
    for parent, child in view.children:
        children.setdefault(parent, []).append(child)
    referrers: dict[str, list[str]] = {}
    for manifest in view.manifests:
        if manifest.subject is not None:
            referrers.setdefault(manifest.subject, []).append(manifest.digest)
    kept = set(tagged)
    kept |= {m.digest for m in view.manifests if m.pushed_at > now - delay}
    if not policy.delete_referrers:
        kept |= {m.digest for m in view.manifests if m.subject is not None}
    pending = list(kept)
    while pending:  # what a kept manifest holds is kept: an index's children, a subject's referrers
        digest = pending.pop()
        for held in (*children.get(digest, ()), *referrers.get(digest, ())):
            if held not in kept:
                kept.add(held)
                pending.append(held)
    going = {m.digest: m for m in view.manifests if m.digest not in kept}
    # delete a manifest before what it lists or refers to (a child stays listed while its index is there)
    holders: dict[str, set[str]] = {digest: set() for digest in going}
    for parent, child in view.children:
        if parent in going and child in going:
            holders[child].add(parent)
    for manifest in going.values():
        if manifest.subject in going:
            holders[manifest.subject].add(manifest.digest)
    while holders:
        ready = sorted(digest for digest, by in holders.items() if not by)
        if not ready:  # a cycle cannot be pushed (digests), but never loop
            ready = sorted(holders)
        for digest in ready:
            del holders[digest]
            for by in holders.values():
                by.discard(digest)
            manifest = going[digest]
            if manifest.subject is not None:
                why = f"referrer of {manifest.subject}, which is not kept"
            elif digest in untagged_before:
                why = f"untagged, pushed {_when(manifest.pushed_at)}, held by no kept index"
            else:
                why = "untagged by this run's tag deletions"
            removals.append(Removal(repository, "manifest", digest, digest, why))
    return removals, protected


class Retention:
    """Applies the ``retention`` section over a metadata store, through the manifests service."""

    def __init__(self, meta: MetadataStore, manifests: Manifests, section: RetentionSection,
                 clock: Callable[[], float] = time.time) -> None:
        self.meta = meta
        self.manifests = manifests
        self.section = section
        self.clock = clock

    async def run(self, dry_run: bool) -> RetentionReport:
        report = RetentionReport(dry_run, self.clock())
        if not self.section.policies:
            return report
        rules = await self.meta.immutable_rules()
        delay = self.section.delay_seconds
        with origin_scope(RETENTION_ORIGIN):
            for repository in await self.meta.list_repositories(None, None):
                policy = self.section.policy_for(repository)
                found = None if policy is None else await self.meta.repository_id(repository)
                if policy is None or found is None:
                    continue
                report.repositories += 1
                view = await self.meta.retention_view(found)
                removals, protected = plan(repository, view, policy, rules, self.clock(), delay)
                report.protected.extend(protected)
                if dry_run:
                    report.removals.extend(removals)
                    continue
                for removal in removals:
                    why = await self._delete(removal)
                    if why is None:
                        report.removals.append(removal)
                    else:
                        report.skipped.append((removal, why))
        return report

    async def _delete(self, removal: Removal) -> str | None:
        """Delete one planned target; None if deleted, else why not."""
        reference = TagRef(removal.target) if removal.kind == "tag" else DigestRef(Digest.parse(removal.target))
        try:
            if await self.manifests.expire(removal.repository, reference, removal.digest):
                return None
        except RegistryError as error:
            return error.message
        return "changed since it was planned (moved, tagged or listed again)"
