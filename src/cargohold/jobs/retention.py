"""Retention (``retention.enabled``) as a job: one run per ``retention.interval``, in one process of the
deployment (the job's lease), logging each deletion (or, with ``retention.dry_run``, what it would delete)."""

from __future__ import annotations

import logging
from typing import Final

from ..service.retention import Retention
from .runner import Job

log: Final = logging.getLogger("cargohold.jobs")


def retention_job(retention: Retention) -> Job | None:
    section = retention.section
    if not section.enabled:
        return None

    async def run() -> None:
        report = await retention.run(section.dry_run)
        verb = "retention would delete" if report.dry_run else "retention deleted"
        for removal in report.removals:
            log.info(verb, extra=removal.to_json())
        for kept in report.protected:
            log.info("retention kept a tag an immutable tag rule protects", extra=kept.to_json())
        for removal, why in report.skipped:
            log.warning("retention skipped a target that changed", extra={**removal.to_json(), "skipped": why})

    return Job("retention", section.interval_seconds, run)
