"""The registry service: repositories, blobs, uploads, manifests, tags, referrers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Final

from ..digest import ALGORITHMS, Digest, DigestError
from ..errcodes import (
    BlobUnknown,
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
    Unsupported,
)
from ..formats import Manifest, ManifestError, ManifestSignatureError, is_schema1, parse_manifest
from ..metadata.store import ManifestRecord, MetadataStore, NewManifest, ReferrerRecord, UploadRecord
from ..reference import is_repository_name, is_tag
from ..storage.driver import BlobStore, LocalFileServer
from .uploads import DEFAULT_ALGORITHM, Uploads

#: Distribution's default; manifests are held in memory and in the database
DEFAULT_MAX_MANIFEST_SIZE: Final = 4 * 1024 * 1024
#: repository names read per step when the catalog is filtered for a caller
CATALOG_SCAN: Final = 1000
#: most ``tag`` parameters one manifest push may carry (the spec asks for at least 10; more is 414)
MAX_PUSH_TAGS: Final = 50


@dataclass(frozen=True, slots=True)
class RegistryOptions:
    delete_enabled: bool = True
    read_only: bool = False
    max_manifest_size: int = DEFAULT_MAX_MANIFEST_SIZE
    #: abandoned uploads are purged after this long without progress
    upload_max_age_seconds: float = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class BlobBody:
    """How to send a blob (or a range of it): a local file path, or a stream."""

    size: int
    local_path: str | None
    stream: AsyncIterator[bytes] | None


@dataclass(frozen=True, slots=True)
class StoredManifest:
    digest: str
    media_type: str
    subject: str | None
    #: the tags now pointing at it, from the ``tag`` parameters of a push by digest
    tags: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def parse_digest(text: str) -> Digest:
    try:
        return Digest.parse(text)
    except DigestError as exc:
        raise DigestInvalid(str(exc)) from None


def parse_algorithm(text: str | None) -> str:
    """The ``digest-algorithm`` of an upload: sha256 unless it names another supported one."""
    if text is None:
        return DEFAULT_ALGORITHM
    if text not in ALGORITHMS:
        raise DigestInvalid(f"unsupported digest algorithm {text!r}", detail={"algorithm": text})
    return text


def media_type_warning(media_type: str) -> str | None:
    """What a client should be warned of when it pushes or pulls a manifest of this type."""
    if is_schema1(media_type):
        return "Docker schema 1 manifests are deprecated; convert the image to Docker schema 2 or OCI"
    return None


def check_name(name: str) -> None:
    if not is_repository_name(name):
        raise NameInvalid(f"invalid repository name {name!r}", detail={"name": name})


class Registry:
    def __init__(self, blobs: BlobStore, meta: MetadataStore, options: RegistryOptions):
        self.blobs = blobs
        self.meta = meta
        self.options = options
        self.uploads = Uploads(blobs, meta)
        self._local = isinstance(blobs, LocalFileServer)

    async def close(self) -> None:
        await self.meta.close()

    def check_writable(self) -> None:
        if self.options.read_only:
            raise Unsupported("the registry is in read-only mode")

    def check_deletable(self) -> None:
        self.check_writable()
        if not self.options.delete_enabled:
            raise Unsupported("deletes are disabled on this registry")

    async def _repository_id(self, name: str) -> int:
        found = await self.meta.repository_id(name)
        if found is None:
            raise NameUnknown(f"repository {name!r} is not known", detail={"name": name})
        return found

    # blobs

    async def blob_size(self, repository: str, digest_text: str) -> tuple[Digest, int]:
        digest = parse_digest(digest_text)
        size = await self.meta.linked_blob_size(repository, str(digest))
        if size is None:
            raise BlobUnknown(detail={"digest": str(digest)})
        return digest, size

    async def blob_body(self, digest: Digest, start: int = 0, length: int | None = None) -> BlobBody:
        whole = start == 0 and length is None
        if self._local and whole:
            assert isinstance(self.blobs, LocalFileServer)
            size = await self.blobs.stat(digest)
            if size is None:
                raise BlobUnknown("blob bytes are missing from storage", detail={"digest": str(digest)})
            return BlobBody(size, self.blobs.local_path(digest), None)
        return BlobBody(length or 0, None, self.blobs.read(digest, start, length))

    async def delete_blob(self, repository: str, digest_text: str) -> None:
        self.check_deletable()
        digest = parse_digest(digest_text)
        repository_id = await self._repository_id(repository)
        if not await self.meta.unlink_blob(repository_id, str(digest)):
            raise BlobUnknown(detail={"digest": str(digest)})

    # uploads

    async def start_upload(self, repository: str, algorithm: str = DEFAULT_ALGORITHM) -> str:
        self.check_writable()
        check_name(repository)
        return await self.uploads.start(repository, algorithm)

    async def mount_blob(self, repository: str, source: str, digest_text: str) -> Digest | None:
        """Link a blob from ``source`` into ``repository``; None if it is not there to mount."""
        self.check_writable()
        check_name(repository)
        digest = parse_digest(digest_text)
        if not is_repository_name(source) or await self.meta.linked_blob_size(source, str(digest)) is None:
            return None
        return await self._link(repository, digest)

    async def mount_found_blob(
        self, repository: str, digest_text: str, may_pull: Callable[[str], bool], *, scan: int = CATALOG_SCAN
    ) -> Digest | None:
        """Link a blob into ``repository`` from any repository ``may_pull`` accepts; None if there is none.

        A blob linked only where the caller may not pull is not mounted: the
        answer is then the same as for a blob the registry does not hold.
        """
        self.check_writable()
        check_name(repository)
        digest = parse_digest(digest_text)
        cursor: str | None = None
        while True:
            names = await self.meta.repositories_with_blob(str(digest), scan, cursor)
            if any(may_pull(name) for name in names):
                return await self._link(repository, digest)
            if len(names) < scan:
                return None
            cursor = names[-1]

    async def _link(self, repository: str, digest: Digest) -> Digest | None:
        repository_id = await self.meta.ensure_repository(repository)
        return digest if await self.meta.link_blob(repository_id, str(digest)) else None

    async def upload_blob(
        self,
        repository: str,
        digest_text: str,
        body: AsyncIterator[bytes],
        length: int | None,
        algorithm: str = DEFAULT_ALGORITHM,
    ) -> Digest:
        """A monolithic upload: POST with ``?digest=`` and the whole blob as body."""
        self.check_writable()
        check_name(repository)
        digest = parse_digest(digest_text)
        upload_id = await self.uploads.start(repository, algorithm)
        try:
            record = await self.uploads.get(repository, upload_id)
            self.uploads.check_digest(record, digest)
            size, hasher = await self.uploads.append(record, body, length=length, final=True)
            await self.uploads.finish(record, digest, size, hasher)
        except BaseException:
            await self.uploads.cancel(upload_id)
            raise
        return digest

    async def upload_status(self, repository: str, upload_id: str) -> UploadRecord:
        return await self.uploads.get(repository, upload_id)

    async def append_upload(
        self,
        repository: str,
        upload_id: str,
        body: AsyncIterator[bytes],
        start: int | None,
        length: int | None,
    ) -> int:
        self.check_writable()
        async with self.uploads.exclusive(repository, upload_id) as record:
            size, _ = await self.uploads.append(record, body, start=start, length=length)
        return size

    async def complete_upload(
        self, repository: str, upload_id: str, digest_text: str, body: AsyncIterator[bytes], length: int | None
    ) -> Digest:
        self.check_writable()
        digest = parse_digest(digest_text)
        record = await self.uploads.session(repository, upload_id)
        if record.digest is not None:
            # A retry of a PUT whose commit began (its answer was lost, or the server died
            # during it): its body was part of the bytes already verified.
            async for _ in body:
                pass
            await self.uploads.finish_again(record, digest)
            return digest
        async with self.uploads.exclusive(repository, upload_id) as record:
            self.uploads.check_digest(record, digest)
            size, hasher = await self.uploads.append(record, body, length=length, final=True)
            await self.uploads.finish(record, digest, size, hasher)
        return digest

    async def cancel_upload(self, repository: str, upload_id: str) -> None:
        self.check_writable()  # it deletes the session's bytes; Distribution refuses it too
        await self.uploads.get(repository, upload_id)
        await self.uploads.cancel(upload_id)

    # manifests

    async def get_manifest(self, repository: str, reference: str) -> ManifestRecord:
        if ":" in reference:
            digest = parse_digest(reference)
            record = await self.meta.manifest(repository, str(digest))
        else:
            record = await self.meta.tagged_manifest(repository, reference)
        if record is None:
            if await self.meta.repository_id(repository) is None:
                raise NameUnknown(detail={"name": repository})
            raise ManifestUnknown(detail={"reference": reference})
        return record

    async def put_manifest(
        self, repository: str, reference: str, content_type: str | None, raw: bytes, tags: Sequence[str] = ()
    ) -> StoredManifest:
        """Store a manifest under ``reference`` (a tag or its digest).

        ``tags`` (the ``tag`` parameters of a push by digest) all point at it
        once it is stored, in the same transaction; one invalid tag refuses the
        whole push.
        """
        self.check_writable()
        check_name(repository)
        if len(raw) > self.options.max_manifest_size:
            raise ManifestTooLarge(f"manifest exceeds {self.options.max_manifest_size} bytes")
        expected: Digest | None = None
        if ":" in reference:
            expected = parse_digest(reference)
        elif not is_tag(reference):
            raise TagInvalid(f"invalid tag {reference!r}", detail={"tag": reference})
        elif tags:
            raise TagInvalid("tag parameters need a push by digest", detail={"tag": reference})
        new_tags = self._check_push_tags(tags) if expected is not None else (reference,)
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
        self._check_schema1_identity(manifest, repository, new_tags)
        # checked before the repository is created: a refused manifest must not create one
        repository_id = await self.meta.repository_id(repository)
        await self._check_references(repository_id, manifest)
        if repository_id is None:
            repository_id = await self.meta.ensure_repository(repository)
        subject = str(manifest.subject.digest) if manifest.subject is not None else None
        annotations = json.dumps(dict(manifest.annotations), sort_keys=True) if manifest.annotations else None
        record = NewManifest(
            digest=str(digest),
            media_type=manifest.media_type,
            content=raw,
            artifact_type=manifest.referrer_artifact_type,
            subject_digest=subject,
            annotations_json=annotations,
            references=[str(d.digest) for d in manifest.references],
        )
        await self.meta.put_manifest(repository_id, record, new_tags)
        warning = media_type_warning(manifest.media_type)
        return StoredManifest(
            str(digest), manifest.media_type, subject,
            tags=new_tags if expected is not None else (),
            warnings=(warning,) if warning else (),
        )

    @staticmethod
    def _check_push_tags(tags: Sequence[str]) -> tuple[str, ...]:
        """The distinct ``tag`` parameters of a push, in order, if every one is a valid tag."""
        distinct = tuple(dict.fromkeys(tags))
        if len(distinct) > MAX_PUSH_TAGS:
            raise TooManyTags(f"at most {MAX_PUSH_TAGS} tags per push")
        invalid = [tag for tag in distinct if not is_tag(tag)]
        if invalid:
            raise TagInvalid(f"invalid tag {invalid[0]!r}", detail={"tags": invalid})
        return distinct

    @staticmethod
    def _check_schema1_identity(manifest: Manifest, repository: str, tags: Sequence[str]) -> None:
        if manifest.name is not None and manifest.name != repository:
            raise NameInvalid(f"manifest names repository {manifest.name!r}, not {repository!r}")
        for tag in tags:
            if manifest.tag is not None and manifest.tag != tag:
                raise TagInvalid(f"manifest names tag {manifest.tag!r}, not {tag!r}")

    async def _check_references(self, repository_id: int | None, manifest: Manifest) -> None:
        """Every referenced blob and child manifest must be in the repository; report all missing.

        ``repository_id`` None: the repository does not exist yet, so it holds none of them.
        """
        digests = [str(d.digest) for d in manifest.references]
        if repository_id is None:
            missing = set(digests)
        elif manifest.is_index:
            missing = await self.meta.missing_manifests(repository_id, digests)
        else:
            missing = await self.meta.unlinked_blobs(repository_id, digests)
        if missing:
            kind = "manifest" if manifest.is_index else "blob"
            raise ManifestBlobUnknown(f"manifest references an unknown {kind}", digests=sorted(missing))

    async def delete_manifest(self, repository: str, reference: str) -> None:
        self.check_deletable()
        repository_id = await self._repository_id(repository)
        if ":" in reference:
            digest = parse_digest(reference)
            if not await self.meta.delete_manifest(repository_id, str(digest)):
                raise ManifestUnknown(detail={"digest": str(digest)})
        elif not await self.meta.delete_tag(repository_id, reference):
            raise ManifestUnknown(detail={"tag": reference})

    # listings

    async def tags(self, repository: str, limit: int | None, last: str | None) -> list[str]:
        repository_id = await self._repository_id(repository)
        return await self.meta.list_tags(repository_id, limit, last)

    async def catalog(self, limit: int | None, last: str | None) -> list[str]:
        return await self.meta.list_repositories(limit, last)

    async def catalog_where(
        self, keep: Callable[[str], bool], limit: int | None, last: str | None, *, scan: int = CATALOG_SCAN
    ) -> list[str]:
        """Up to ``limit`` repository names after ``last`` that ``keep`` accepts.

        Names are read in slices, twice the page at first and doubling up to
        ``scan``, so a page costs about what it shows rather than the whole
        catalog, and a caller who may see little still needs few reads.
        """
        kept: list[str] = []
        cursor = last
        step = scan if limit is None else min(scan, max(2 * limit, 16))
        while limit is None or len(kept) < limit:
            names = await self.meta.list_repositories(step, cursor)
            kept += [name for name in names if keep(name)]
            if len(names) < step:
                break
            cursor = names[-1]
            step = min(scan, 2 * step)
        return kept if limit is None else kept[:limit]

    async def referrers(self, repository: str, digest_text: str, artifact_type: str | None) -> list[ReferrerRecord]:
        digest = parse_digest(digest_text)
        # The referrers API never answers 404: clients read that as "not supported".
        repository_id = await self.meta.repository_id(repository)
        if repository_id is None:
            return []
        return await self.meta.referrers(repository_id, str(digest), artifact_type)
