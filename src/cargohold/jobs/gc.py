"""Garbage collection (:mod:`cargohold.service.gc`) as a job: once per deployment per interval."""

from __future__ import annotations

from ..service.gc import Collector
from .runner import Job


def gc_job(collector: Collector, interval: float) -> Job:
    async def collect() -> None:
        # abandoned uploads have a job of their own, run more often (a second purge would race it)
        await collector.run(uploads=False)  # failures are recorded in the run and logged there

    return Job("garbage-collection", interval, collect)
