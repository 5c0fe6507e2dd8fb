"""The purge of abandoned uploads, as a job."""

from __future__ import annotations

import logging
from typing import Final

from ..service import BACKEND_ERRORS, RegistryService
from .runner import Job

log: Final = logging.getLogger("cargohold.jobs")

#: how often abandoned uploads are looked for (more often when they expire sooner)
PURGE_INTERVAL_SECONDS: Final = 600.0


def purge_job(registry: RegistryService) -> Job:
    async def purge() -> None:
        try:
            removed = await registry.purge_uploads()
        except BACKEND_ERRORS:
            log.exception("upload purge failed")
            return
        if removed:
            log.info("purged abandoned uploads", extra={"count": removed})

    interval = min(PURGE_INTERVAL_SECONDS, registry.options.upload_max_age_seconds)
    return Job("purge-uploads", interval, purge)
