"""Mirror jobs: stored, run on their schedule by one process of the deployment, or at once when asked.

Every process looks for due jobs every :data:`POLL_SECONDS` (a read, no lease: :meth:`Mirrors.job` runs
everywhere). Each run, scheduled or asked for (``cargohold mirror run``, the admin API), first takes the
job's own lease (``mirror:NAME``), kept while it lasts, so a job never runs twice at once anywhere; a
scheduled run then checks, under the lease, that the job is still due (another process may have just run
it). A run with errors is tried again after a backoff that doubles with each failure in a row, from
:data:`RETRY_SECONDS` up to the job's interval; a run without errors schedules the next an interval after
it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from typing import Final, Protocol

from ..jobs.runner import Job, Leases, holder_id
from .local import LocalRegistry
from .model import MirrorBusy, MirrorJob, MirrorRecords, MirrorRun, MirrorUnknown
from .run import run_job

log: Final = logging.getLogger("cargohold.mirror")

#: the first retry after a failed run; doubled with each failure in a row, capped at the job's interval
RETRY_SECONDS: Final = 30.0
#: how often the deployment looks for due jobs
POLL_SECONDS: Final = 2.0
#: a job's lease while it runs (renewed at a third of it)
LEASE_SECONDS: Final = 60.0


class MirrorStore(MirrorRecords, Leases, Protocol):
    pass


class Mirrors:
    """The jobs of one deployment, over its metadata store."""

    def __init__(self, store: MirrorStore, local: LocalRegistry, holder: str | None = None,
                 retry_seconds: float = RETRY_SECONDS) -> None:
        self.store = store
        self.local = local
        self.holder = holder or holder_id()
        self.retry_seconds = retry_seconds
        self._running: set[str] = set()

    async def add(self, job: MirrorJob) -> MirrorJob:
        now = time.time()
        stored = replace(job.checked(), created_at=now, next_run_at=now, failures=0)
        await self.store.add_mirror(stored)
        return stored

    async def run(self, name: str, started_by: str, *, only_if_due: bool = False) -> MirrorRun:
        """Run the job now, here; MirrorUnknown, or MirrorBusy when it is running (here or elsewhere) or, with
        ``only_if_due``, no longer due (a run elsewhere just finished)."""
        if await self.store.mirror(name) is None:
            raise MirrorUnknown(name)
        lease = f"mirror:{name}"
        if name in self._running or not await self.store.acquire_lease(lease, self.holder, LEASE_SECONDS):
            raise MirrorBusy(name)
        self._running.add(name)
        renew = asyncio.create_task(self._renew(lease))
        try:
            job = await self.store.mirror(name)  # as it is now that no one else runs it
            if job is None:
                raise MirrorUnknown(name)
            if only_if_due and job.next_run_at > time.time():
                raise MirrorBusy(name)
            started = await self.store.start_mirror_run(MirrorRun(name, started_by, time.time()))
            done = await asyncio.to_thread(run_job, job, self.local, started)
            failures = job.failures + 1 if done.failed else 0
            await self.store.finish_mirror_run(done, self._next(job, done, failures), failures)
        finally:
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renew
            self._running.discard(name)
            await self.store.release_lease(lease, self.holder)
        (log.warning if done.failed else log.info)("mirror run", extra={
            "job": name, "started_by": started_by, "copied": len(done.copied), "skipped": len(done.skipped),
            "errors": done.errors})
        return done

    def _next(self, job: MirrorJob, run: MirrorRun, failures: int) -> float:
        finished = run.finished_at or time.time()
        if failures:
            return finished + min(job.interval_seconds, self.retry_seconds * 2.0 ** (failures - 1))
        return max(run.started_at + job.interval_seconds, finished)

    async def _renew(self, lease: str) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            await self.store.acquire_lease(lease, self.holder, LEASE_SECONDS)

    async def run_due(self) -> None:
        """Run every job that is due, one after another (a job running elsewhere is left to it)."""
        for job in await self.store.due_mirrors(time.time()):
            try:
                await self.run(job.name, "schedule", only_if_due=True)
            except (MirrorBusy, MirrorUnknown):
                continue

    def job(self, interval: float = POLL_SECONDS) -> Job:
        # in every process: looking is a read, and each run takes its job's lease
        return Job("mirrors", interval, self.run_due, everywhere=True)
