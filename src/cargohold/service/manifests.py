"""Manifests: fetching one (with Distribution's fallback for clients that cannot read a list), storing, deleting."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, NoReturn, Protocol

from ..digest import Digest
from ..errcodes import (
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestTooLarge,
    ManifestUnknown,
    ManifestUnverified,
    NameInvalid,
    NameUnknown,
    TagInvalid,
    TooManyTags,
)
from ..events import Action, Event
from ..events.recorder import Recorder
from ..formats import Manifest, ManifestError, ManifestSignatureError, MediaType, is_schema1, parse_manifest
from ..metadata.store import ManifestRecord, MetadataQueries, MetadataStore, NewManifest
from ..reference import DigestRef, ManifestReference, TagRef, is_tag
from .accepts import Accepts
from .common import Guard, check_name, repository_id
from .immutable import check_manifest_delete, check_push, check_tag_delete, protected_tags
from .pulls import PullTimes
from .quota import charge_quota
from .schema1_legacy import LegacySchema1

#: most ``tag`` parameters one manifest push may carry (the spec asks for at least 10; more is 414)
MAX_PUSH_TAGS: Final = 50
#: the image a client that cannot read a Docker manifest list gets instead, as from Distribution
LIST_FALLBACK_PLATFORM: Final = ("linux", "amd64")

#: served by tag only to clients that name them (Distribution serves the others schema 1)
_NAMED_ONLY: Final = frozenset({MediaType.DOCKER_MANIFEST, MediaType.DOCKER_MANIFEST_LIST})
#: reads a request body of at most the given size; None if it is longer
BodyReader = Callable[[int], Awaitable[bytes | None]]


class ManifestContent(Protocol):
    """A stored manifest as it is served (a store's own row, read-only; no copy on the hottest path)."""

    @property
    def digest(self) -> str: ...

    @property
    def media_type(self) -> str: ...

    @property
    def content(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class StaleManifest:
    """A cached manifest served although its source could not be asked whether it is current: ``warning`` says so."""

    found: ManifestContent
    warning: str

    @property
    def digest(self) -> str:
        return self.found.digest

    @property
    def media_type(self) -> str:
        return self.found.media_type

    @property
    def content(self) -> bytes:
        return self.found.content


@dataclass(frozen=True, slots=True)
class StoredManifest:
    digest: str
    media_type: str
    subject: str | None
    #: the tags now pointing at it, from the ``tag`` parameters of a push by digest
    tags: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def _takes(accepts: Accepts, reference: ManifestReference, media_type: str) -> bool:
    """Whether to serve a manifest of this type as it is.

    Distribution 2.8's rule: by tag, a Docker schema 2 image or manifest list only to a client
    that names its type (any other gets schema 1, or the list's image); anything else also to a
    client that takes anything. By digest, whatever the client takes.
    """
    if isinstance(reference, TagRef) and media_type in _NAMED_ONLY:
        return accepts.names(media_type)
    return accepts(media_type)


def media_type_warning(media_type: str) -> str | None:
    """What a client should be warned of when it pushes or pulls a manifest of this type."""
    if is_schema1(media_type):
        return "Docker schema 1 manifests are deprecated; convert the image to Docker schema 2 or OCI"
    return None


class Manifests:
    def __init__(
        self, meta: MetadataStore, guard: Guard, schema1: LegacySchema1 | None = None, recorder: Recorder | None = None,
        pulls: PullTimes | None = None,
    ):
        """``schema1``: what makes schema 1 for legacy clients; None: they get MANIFEST_UNKNOWN.
        ``pulls``: where pull times are held until written; None: they are not recorded."""
        self.meta = meta
        self.guard = guard
        self.schema1 = schema1
        self.recorder = recorder or Recorder()
        self.pulls = pulls

    async def _unknown(self, repository: str, reference: ManifestReference) -> NoReturn:
        if await self.meta.repository_id(repository) is None:
            raise NameUnknown(detail={"name": repository})
        raise ManifestUnknown(detail={"reference": str(reference)})

    async def get(self, repository: str, reference: ManifestReference, accepts: Accepts) -> ManifestContent:
        """The manifest ``reference`` names, or what to serve instead to a client that ``accepts`` only some types."""
        if isinstance(reference, TagRef):
            record = await self.meta.tagged_manifest(repository, reference.tag)
        else:
            record = await self.meta.manifest(repository, str(reference.digest))
            if record is None:  # a schema 1 manifest served by tag before: its digest names it too
                record = await self.meta.generated_manifest_by_digest(repository, str(reference.digest))
        if record is None:
            await self._unknown(repository, reference)
        if _takes(accepts, reference, record.media_type):
            return record
        fallback = await self._list_fallback(repository, reference, record, accepts)
        if fallback is not None:
            return fallback
        if self.schema1 is not None and isinstance(reference, TagRef) and accepts(MediaType.DOCKER_SCHEMA1_SIGNED):
            platform = accepts.platform or LIST_FALLBACK_PLATFORM
            return await self.schema1.for_tag(repository, reference.tag, record, platform)
        raise ManifestUnknown(
            f"manifest is {record.media_type}, which the Accept header does not allow",
            detail={"reference": str(reference), "mediaType": record.media_type},
        )

    async def _list_fallback(
        self, repository: str, reference: ManifestReference, record: ManifestRecord, accepts: Accepts
    ) -> ManifestRecord | None:
        """Distribution's answers to a client who does not accept Docker manifest lists.

        By digest, the list itself: a digest names those bytes. By tag, the list's
        linux/amd64 image if the client takes its type; else nothing (schema 1 or
        404). OCI indexes get no such fallback, as in Distribution 2.8.
        """
        if record.media_type != MediaType.DOCKER_MANIFEST_LIST:
            return None
        if isinstance(reference, DigestRef):
            return record
        listing = parse_manifest(record.content, record.media_type)
        image = next(
            (
                entry
                for entry in listing.manifests
                if entry.platform is not None
                and (entry.platform.os, entry.platform.architecture) == LIST_FALLBACK_PLATFORM
            ),
            None,
        )
        if image is None or not _takes(accepts, reference, image.media_type):
            return None
        found = await self.meta.manifest(repository, str(image.digest))
        if found is None:
            await self._unknown(repository, DigestRef(image.digest))
        return found

    async def put(
        self,
        repository: str,
        reference: ManifestReference,
        content_type: str | None,
        declared_length: int | None,
        read: BodyReader,
        tags: Sequence[str] = (),
    ) -> StoredManifest:
        """Store the manifest ``read`` gives (``declared_length`` bytes, if known) under ``reference``.

        A manifest larger than the configured limit is refused (SIZE_INVALID,
        413) before its body is read if its length is declared, else once the
        body passes the limit. ``tags`` (the ``tag`` parameters of a push by
        digest) all point at it once it is stored, in the same transaction; one
        invalid tag refuses the whole push.
        """
        limit = self.guard.options.max_manifest_size
        raw = None if declared_length is not None and declared_length > limit else await read(limit)
        if raw is None:
            raise ManifestTooLarge(f"manifest exceeds {limit} bytes")
        self.guard.check_writable()
        check_name(repository)
        expected: Digest | None = None
        if isinstance(reference, DigestRef):
            expected = reference.digest
            new_tags = _check_push_tags(tags)
        elif not is_tag(reference.tag):
            raise TagInvalid(f"invalid tag {reference.tag!r}", detail={"tag": reference.tag})
        elif tags:
            raise TagInvalid("tag parameters need a push by digest", detail={"tag": reference.tag})
        else:
            new_tags = (reference.tag,)
        try:
            manifest = parse_manifest(raw, content_type)
        except ManifestSignatureError as exc:
            raise ManifestUnverified(str(exc)) from None
        except ManifestError as exc:
            raise ManifestInvalid(str(exc)) from None
        # A digest in the URL may be of the canonical digest (schema 1: of the payload) or of the bytes.
        if expected is not None and expected != manifest.digest and expected != Digest.of(raw, expected.algorithm):
            raise DigestInvalid(
                f"manifest digest is {manifest.digest}, not {expected}",
                detail={"expected": str(expected), "actual": str(manifest.digest)},
            )
        digest = expected or manifest.digest
        _check_schema1_identity(manifest, repository, new_tags)
        subject = str(manifest.subject.digest) if manifest.subject is not None else None
        record = new_manifest(manifest, raw, digest)
        # one transaction: a reference deleted concurrently cannot slip between the check and the insert
        async with self.meta.transaction() as tx:
            protected = await protected_tags(tx, repository, new_tags, record.digest)  # first: see .immutable
            # checked before the repository is created: a refused manifest must not create one
            found = await tx.repository_id(repository)
            await _check_references(tx, found, manifest)
            await insert_manifest(
                tx, self.recorder, repository, found, record, new_tags,
                check=lambda previous: check_push(protected, repository, previous, record.digest),
            )
        warning = media_type_warning(manifest.media_type)
        return StoredManifest(
            str(digest), manifest.media_type, subject,
            tags=new_tags if expected is not None else (),
            warnings=(warning,) if warning else (),
        )

    async def delete(self, repository: str, reference: ManifestReference) -> None:
        self.guard.check_deletable()
        found = await repository_id(self.meta, repository)
        async with self.meta.transaction() as tx:
            await self._delete(tx, repository, found, reference)

    async def expire(self, repository: str, reference: ManifestReference, digest: str) -> bool:
        """Retention's delete: as :meth:`delete` (its checks, its event), if the target is still as retention
        chose it: a tag still naming ``digest``, a manifest still with no tag and no index listing it.
        False (nothing deleted) if it changed. Refused only in read-only mode: ``delete_enabled`` is
        about clients."""
        self.guard.check_writable()
        found = await repository_id(self.meta, repository)
        async with self.meta.transaction() as tx:
            if isinstance(reference, DigestRef) and (
                await tx.manifest_tags(found, digest) or await tx.is_listed(found, digest)
            ):
                return False
            return await self._delete(tx, repository, found, reference, digest)

    async def _delete(
        self, tx: MetadataQueries, repository: str, found: int, reference: ManifestReference,
        expected: str | None = None,
    ) -> bool:
        """Delete in ``tx``; a tag only while it names ``expected`` (if given: else False, nothing deleted)."""
        if isinstance(reference, DigestRef):
            digest = str(reference.digest)
            await check_manifest_delete(tx, repository, found, digest)
            gone = await tx.manifest(repository, digest)
            await tx.release_quota(repository, found, digest)
            if gone is None or not await tx.delete_manifest(found, digest):
                raise ManifestUnknown(detail={"digest": digest})
            event = Event.now(Action.MANIFEST_DELETE, repository=repository, digest=digest,
                              media_type=gone.media_type, size=len(gone.content))
        else:
            await check_tag_delete(tx, repository, found, reference.tag)
            untagged = await tx.tagged_manifest(repository, reference.tag)
            if not await tx.delete_tag(found, reference.tag, expected):
                if expected is not None:
                    return False
                raise ManifestUnknown(detail={"tag": reference.tag})
            event = Event.now(Action.TAG_DELETE, repository=repository, tag=reference.tag,
                              digest=untagged.digest if untagged else None,
                              media_type=untagged.media_type if untagged else None)
        await self.recorder.record(tx, event)
        return True

    def pulled(self, repository: str, reference: ManifestReference, found: ManifestContent) -> None:
        """A manifest GET served ``found``: held for the next batch of reads and pull times (no I/O here)."""
        if self.pulls is not None:
            self.pulls.pulled(repository, found.digest)
        self.recorder.read(
            Action.MANIFEST_PULL, repository=repository, tag=reference.tag if isinstance(reference, TagRef) else None,
            digest=found.digest, media_type=found.media_type, size=len(found.content),
        )


async def insert_manifest(
    tx: MetadataQueries, recorder: Recorder, repository: str, found: int | None, record: NewManifest,
    tags: Sequence[str], check: Callable[[dict[str, str]], None] | None = None,
) -> None:
    """Store ``record`` in ``tx`` with ``tags`` pointing at it (creating the repository if ``found`` is None), its
    quota charged and a push's events recorded; ``check`` may refuse it, given where the tags pointed before."""
    await charge_quota(tx, repository, found, record)
    if found is None:
        found = await tx.ensure_repository(repository)
        await recorder.record(tx, Event.now(Action.REPOSITORY_CREATE, repository=repository))
        previous: dict[str, str] = {}
    else:
        previous = await tx.tag_targets(found, tags)
    if check is not None:
        check(previous)
    await tx.put_manifest(found, record, tags)
    await recorder.record(tx, _push_event(repository, record, tags, previous))


def new_manifest(manifest: Manifest, raw: bytes, digest: Digest) -> NewManifest:
    """The row of a parsed manifest stored as ``raw`` under ``digest``."""
    return NewManifest(
        digest=str(digest),
        media_type=manifest.media_type,
        content=raw,
        artifact_type=manifest.referrer_artifact_type,
        subject_digest=str(manifest.subject.digest) if manifest.subject is not None else None,
        annotations_json=json.dumps(dict(manifest.annotations), sort_keys=True) if manifest.annotations else None,
        references=[str(d.digest) for d in manifest.references],
    )


def _push_event(repository: str, record: NewManifest, tags: Sequence[str], previous: dict[str, str]) -> Event:
    """One event per push: the tags it set, and where each tag it moved pointed before."""
    moved = {tag: digest for tag, digest in previous.items() if digest != record.digest}
    detail: dict[str, object] = {"tags": list(tags)}
    if moved:
        detail["previous"] = moved
    return Event.now(
        Action.MANIFEST_PUSH, repository=repository, tag=tags[0] if tags else None, digest=record.digest,
        media_type=record.media_type, size=len(record.content), detail=detail,
    )


async def _check_references(meta: MetadataQueries, repository_id: int | None, manifest: Manifest) -> None:
    """Every referenced blob and child manifest must be in the repository; report all missing.

    ``repository_id`` None: the repository does not exist yet, so it holds none of them.
    """
    digests = [str(d.digest) for d in manifest.references]
    if repository_id is None:
        missing = set(digests)
    elif manifest.is_index:
        missing = await meta.missing_manifests(repository_id, digests)
    else:
        missing = await meta.unlinked_blobs(repository_id, digests)
    if missing:
        kind = "manifest" if manifest.is_index else "blob"
        raise ManifestBlobUnknown(f"manifest references an unknown {kind}", digests=sorted(missing))


def _check_push_tags(tags: Sequence[str]) -> tuple[str, ...]:
    """The distinct ``tag`` parameters of a push, in order, if every one is a valid tag."""
    distinct = tuple(dict.fromkeys(tags))
    if len(distinct) > MAX_PUSH_TAGS:
        raise TooManyTags(f"at most {MAX_PUSH_TAGS} tags per push")
    invalid = [tag for tag in distinct if not is_tag(tag)]
    if invalid:
        raise TagInvalid(f"invalid tag {invalid[0]!r}", detail={"tags": invalid})
    return distinct


def _check_schema1_identity(manifest: Manifest, repository: str, tags: Sequence[str]) -> None:
    if manifest.name is not None and manifest.name != repository:
        raise NameInvalid(f"manifest names repository {manifest.name!r}, not {repository!r}")
    for tag in tags:
        if manifest.tag is not None and manifest.tag != tag:
            raise TagInvalid(f"manifest names tag {manifest.tag!r}, not {tag!r}")
