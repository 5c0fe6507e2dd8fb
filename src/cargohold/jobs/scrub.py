"""The periodic scrub (:mod:`cargohold.service.scrub`), as a job: once per deployment per interval."""

from __future__ import annotations

import logging
from typing import Final

from ..service.scrub import Scrubber, ScrubFailed
from .runner import Job

log: Final = logging.getLogger("cargohold.jobs")


def scrub_job(scrubber: Scrubber, interval: float, sample_size: int) -> Job:
    async def scrub() -> None:
        try:
            report = await scrubber.run(sample_size, started_by="job")
        except ScrubFailed as failed:  # recorded; the next run starts where this one stopped
            log.error("blob scrub failed", extra={"error": failed.run.error, "checked": failed.run.checked})
            return
        run = report.run  # each finding was logged as an error; a clean run is not news
        log.debug("blob scrub ran", extra={"checked": run.checked, "bytes": run.bytes_checked,
                                          "problems": run.problems})

    return Job("scrub-blobs", interval, scrub)
