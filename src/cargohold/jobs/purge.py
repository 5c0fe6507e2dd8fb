"""The purge of abandoned uploads, and of leases long expired, as a job."""

from __future__ import annotations

import logging
from typing import Final, Protocol

from ..service import BACKEND_ERRORS, RegistryService
from .runner import Job

log: Final = logging.getLogger("cargohold.jobs")

#: how often abandoned uploads are looked for (more often when they expire sooner)
PURGE_INTERVAL_SECONDS: Final = 600.0


class ExpiredLeases(Protocol):
    """The lease clean-up of :class:`cargohold.metadata.MetadataStore`."""

    async def drop_expired_leases(self, older_than_seconds: float) -> int: ...


def purge_job(registry: RegistryService, leases: ExpiredLeases) -> Job:
    """Also drops the leases left to lapse (a proxy's tag and blob leases: one row per name ever taken).
    Only those expired a whole interval ago go, a margin for clocks that differ between hosts; taking a
    lease whose row is gone is the same as taking an expired one."""
    interval = min(PURGE_INTERVAL_SECONDS, registry.options.upload_max_age_seconds)

    async def purge() -> None:
        try:
            removed = await registry.purge_uploads()
        except BACKEND_ERRORS:
            log.exception("upload purge failed")
        else:
            if removed:
                log.info("purged abandoned uploads", extra={"count": removed})
        try:
            dropped = await leases.drop_expired_leases(interval)
        except BACKEND_ERRORS:
            log.exception("expired lease purge failed")
            return
        if dropped:
            log.info("dropped expired leases", extra={"count": dropped})

    return Job("purge-uploads", interval, purge)
