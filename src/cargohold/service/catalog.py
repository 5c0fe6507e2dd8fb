"""The catalog: repository names, all of them or those a caller may see."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ..metadata.store import MetadataStore

#: repository names read per step when the catalog is filtered for a caller
CATALOG_SCAN: Final = 1000


class Catalog:
    def __init__(self, meta: MetadataStore):
        self.meta = meta

    async def page(self, limit: int | None, last: str | None) -> list[str]:
        return await self.meta.list_repositories(limit, last)

    async def page_where(
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
