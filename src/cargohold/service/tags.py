"""Tags: a repository's tag list (tags are set and removed with manifests)."""

from __future__ import annotations

from ..metadata.store import MetadataStore
from .common import unknown_repository


class Tags:
    def __init__(self, meta: MetadataStore):
        self.meta = meta

    async def page(self, repository: str, limit: int | None, last: str | None) -> list[str]:
        found = await self.meta.list_tags(repository, limit, last)
        if found is None:
            raise unknown_repository(repository)
        return found
