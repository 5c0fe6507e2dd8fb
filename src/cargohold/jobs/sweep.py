"""The blob store's sweep of objects that a crash left unreferenced, as a job (stores that need one)."""

from __future__ import annotations

import logging
from typing import Final

from ..errcodes import TooManyRequests, Unavailable
from ..service import BACKEND_ERRORS
from ..storage.driver import BlobStore, Sweeper
from .runner import Job

log: Final = logging.getLogger("cargohold.jobs")


def sweep_job(store: BlobStore) -> Job | None:
    """The job, or None when the blob store leaves nothing behind (filesystem, memory)."""
    if not isinstance(store, Sweeper):
        return None

    async def sweep() -> None:
        try:
            removed = await store.sweep()
        except (*BACKEND_ERRORS, TooManyRequests, Unavailable):
            log.exception("blob store sweep failed")  # tried again at the next interval
            return
        if removed:
            log.info("removed objects nothing refers to", extra={"count": removed})

    return Job("sweep-blob-store", store.sweep_interval, sweep)
