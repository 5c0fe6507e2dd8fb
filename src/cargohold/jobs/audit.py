"""The audit log's retention (``audit.retention_days``), as a job."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final, Protocol

from .runner import Job

log: Final = logging.getLogger("cargohold.jobs")

#: how often old entries are looked for (more often when they expire sooner)
AUDIT_PURGE_INTERVAL_SECONDS: Final = 3600.0


class EventRetention(Protocol):
    """The purge of :class:`cargohold.events.audit.AuditLog` (the metadata store)."""

    async def purge_events(self, older_than: float) -> int: ...


def audit_purge_job(events: EventRetention, retention_days: float,
                    clock: Callable[[], float] = time.time) -> Job | None:
    """Deletes entries older than ``retention_days`` (never one with a delivery still to make); None for 0: keep all."""
    if retention_days <= 0:
        return None
    retention = retention_days * 86400.0

    async def purge() -> None:
        removed = await events.purge_events(clock() - retention)
        if removed:
            log.info("purged old audit entries", extra={"count": removed})

    return Job("purge-audit", min(AUDIT_PURGE_INTERVAL_SECONDS, retention), purge)
