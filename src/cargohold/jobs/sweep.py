"""The blob store's sweep of objects that a crash left unreferenced, as a job (stores that need one)."""

from __future__ import annotations

import logging
from typing import Final, Protocol

from ..errcodes import TooManyRequests, Unavailable
from ..service import BACKEND_ERRORS
from .runner import Job

log: Final = logging.getLogger("cargohold.jobs")


class StoreSweep(Protocol):
    """The sweep of :class:`cargohold.storage.driver.Sweeper` (the S3 store)."""

    sweep_interval: float

    async def sweep(self) -> int: ...


def sweep_job(store: StoreSweep) -> Job:
    async def sweep() -> None:
        try:
            removed = await store.sweep()
        except (*BACKEND_ERRORS, TooManyRequests, Unavailable):
            log.exception("blob store sweep failed")  # tried again at the next interval
            return
        if removed:
            log.info("removed objects nothing refers to", extra={"count": removed})

    return Job("sweep-blob-store", store.sweep_interval, sweep)
