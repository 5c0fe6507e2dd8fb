"""Referrers: the manifests whose subject is a given digest, as the descriptors of an OCI index."""

from __future__ import annotations

import json

from ..digest import Digest
from ..formats import Descriptor
from ..metadata.store import MetadataStore, ReferrerRecord
from .common import parse_digest


def _descriptor(record: ReferrerRecord) -> Descriptor:
    algorithm, _, hex_digest = record.digest.partition(":")  # stored as it was verified
    return Descriptor(
        media_type=record.media_type,
        digest=Digest(algorithm, hex_digest),
        size=record.size,
        annotations=json.loads(record.annotations_json) if record.annotations_json else None,
        artifact_type=record.artifact_type or None,
    )


class Referrers:
    def __init__(self, meta: MetadataStore):
        self.meta = meta

    async def find(self, repository: str, digest_text: str, artifact_type: str | None) -> list[Descriptor]:
        digest = parse_digest(digest_text)
        # The referrers API never answers 404: clients read that as "not supported".
        repository_id = await self.meta.repository_id(repository)
        if repository_id is None:
            return []
        return [_descriptor(r) for r in await self.meta.referrers(repository_id, str(digest), artifact_type)]
