"""Tags: a repository's tag list (tags are set and removed with manifests)."""

from __future__ import annotations

from ..metadata.store import MetadataStore
from .common import repository_id


class Tags:
    def __init__(self, meta: MetadataStore):
        self.meta = meta

    async def page(self, repository: str, limit: int | None, last: str | None) -> list[str]:
        found = await repository_id(self.meta, repository)
        return await self.meta.list_tags(found, limit, last)
