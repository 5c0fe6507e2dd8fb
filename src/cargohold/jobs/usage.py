"""The usage figures' refresh (:mod:`cargohold.usage`), with each quota's use recomputed, as a job."""

from __future__ import annotations

from typing import Protocol

from ..usage import REFRESH_INTERVAL_SECONDS
from .runner import Job


class UsageRefresh(Protocol):
    """The usage methods of :class:`cargohold.metadata.MetadataStore`."""

    async def refresh_usage(self) -> int: ...

    async def reconcile_quotas(self) -> None: ...


def usage_job(store: UsageRefresh, interval: float = REFRESH_INTERVAL_SECONDS) -> Job:
    async def refresh() -> None:
        await store.refresh_usage()
        await store.reconcile_quotas()

    return Job("refresh-usage", interval, refresh)
