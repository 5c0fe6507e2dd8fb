"""Garbage collection (:mod:`cargohold.service.gc`) as a job, and the collector a configuration describes."""

from __future__ import annotations

import logging
from typing import Final

from ..config import ServerConfig
from ..metadata.store import MetadataStore
from ..service.gc import Collector, GcOptions
from ..service.uploads import Uploads
from ..storage.driver import BlobStore
from .runner import Job

log: Final = logging.getLogger("cargohold.jobs")


def open_collector(config: ServerConfig, meta: MetadataStore, blobs: BlobStore) -> Collector:
    """The collector of ``config``'s registry; its runs also purge abandoned upload sessions."""
    options = GcOptions(
        grace_period=config.gc.seconds("grace_period"),
        untagged_grace_period=config.gc.seconds("untagged_grace_period"),
        keep_referrers=config.gc.referrers == "keep",
    )
    max_age = config.server.upload_max_age_seconds

    async def purge() -> int:
        return await Uploads(blobs, meta).purge(max_age)

    return Collector(meta, blobs, options, purge, max_age)


def gc_job(collector: Collector, interval: float) -> Job:
    async def collect() -> None:
        # abandoned uploads have a job of their own, run more often (a second purge would race it)
        await collector.run(uploads=False)  # failures are recorded in the run and logged there

    return Job("garbage-collection", interval, collect)
