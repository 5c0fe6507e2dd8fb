"""Periodic work that runs once per deployment, not once per worker.

Every worker starts a :class:`JobRunner`. For each job it tries, a few times per
lease, to take (or renew) the job's lease in the metadata database; only the
process holding the lease runs the job, once per interval. The holder renews it
at every try and while a run lasts, so its lease never lapses while it lives; a
holder that dies (SIGKILL, a lost machine) stops renewing, and another process
takes the lease over once it expires. A lease lasts two intervals but at most
``MAX_LEASE_SECONDS``, so a dead holder of an hourly job is replaced within
that and one try (well under a minute), and the new holder runs the job at once.
A clean shutdown releases the lease, so a restart does not wait for it.

A runner whose tries have all failed (the database errs) for longer than a lease
has lost its leases without knowing who holds them: :meth:`JobRunner.check_leases`
reports it to ``/readyz``.

A job marked ``everywhere`` (the webhook deliveries, whose rows are claimed one
by one) takes no lease: it runs in every process, started again an interval
after it ends or fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

log: Final = logging.getLogger("cargohold.jobs")

#: a lease lasts this many intervals, and at most MAX_LEASE_SECONDS
LEASE_INTERVALS: Final = 2.0
MAX_LEASE_SECONDS: Final = 30.0
#: tries to take or renew a lease during one lease: a live holder renews it long before it lapses
TRIES_PER_LEASE: Final = 3


class Leases(Protocol):
    """The lease methods of :class:`cargohold.metadata.MetadataStore`."""

    async def acquire_lease(self, name: str, holder: str, seconds: float) -> bool: ...

    async def release_lease(self, name: str, holder: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    #: seconds between the starts of two runs
    interval: float
    run: Callable[[], Awaitable[None]]
    #: run in every process, without the lease
    everywhere: bool = False

    def lease_seconds(self, limit: float = MAX_LEASE_SECONDS) -> float:
        return min(self.interval * LEASE_INTERVALS, limit)

    def try_seconds(self, limit: float = MAX_LEASE_SECONDS) -> float:
        """Seconds between two tries for the lease: a whole fraction of the interval, a few per lease."""
        return self.interval / math.ceil(self.interval * TRIES_PER_LEASE / self.lease_seconds(limit))


class LeasesFailing(Exception):
    """This process's lease tries have failed for longer than a lease."""


def holder_id() -> str:
    """This process, told apart from every other on any machine sharing the database."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class JobRunner:
    """Runs each job in the one process that holds its lease; started in every worker."""

    def __init__(self, jobs: Sequence[Job], leases: Leases, holder: str | None = None,
                 max_lease: float = MAX_LEASE_SECONDS):
        self.jobs = tuple(jobs)
        self.max_lease = max_lease
        self.leases = leases
        self.holder = holder or holder_id()
        self._tasks: list[asyncio.Task[None]] = []
        self._held: set[str] = set()
        #: per leased job: when the database last answered a try (monotonic), and why the tries since failed
        self._answered: dict[str, float] = {}
        self._failing: dict[str, str] = {}

    def start(self) -> None:
        started = time.monotonic()
        self._answered = {job.name: started for job in self.jobs if not job.everywhere}
        self._tasks = [asyncio.create_task(self._loop(job), name=f"job {job.name}") for job in self.jobs]

    async def stop(self) -> None:
        """Stop every job (a run in progress is cancelled) and release the leases held."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for name in sorted(self._held):
            try:
                await self.leases.release_lease(name, self.holder)
            except Exception:  # the lease then lapses by itself
                log.warning("releasing a job lease failed", exc_info=True, extra={"job": name})
        self._held.clear()

    def lease_failure(self) -> str | None:
        """Why this process has taken or renewed no lease for longer than a lease (the database failed
        every try since); None while the database answers its tries."""
        now = time.monotonic()
        for job in self.jobs:
            error = self._failing.get(job.name)
            silent = now - self._answered.get(job.name, now)
            if error is not None and silent > job.lease_seconds(self.max_lease):
                return f"job {job.name}: no lease taken or renewed for {silent:.0f} s: {error}"
        return None

    async def check_leases(self) -> None:
        """The readiness check of the leases: raise :class:`LeasesFailing` while :meth:`lease_failure` says why."""
        failure = self.lease_failure()
        if failure is not None:
            raise LeasesFailing(failure)

    async def _loop(self, job: Job) -> None:
        pause = job.interval if job.everywhere else job.try_seconds(self.max_lease)
        last_run: float | None = None
        while True:
            started = time.monotonic()
            if job.everywhere:
                await self._run(job)
            elif await self._lease(job) and (last_run is None or started - last_run >= job.interval - pause / 2):
                last_run = started
                await self._run(job)
            await asyncio.sleep(max(0.0, pause - (time.monotonic() - started)))

    async def _lease(self, job: Job) -> bool:
        try:
            held = await self.leases.acquire_lease(job.name, self.holder, job.lease_seconds(self.max_lease))
        except Exception as exc:
            log.exception("taking a job lease failed", extra={"job": job.name})
            self._failing[job.name] = str(exc).strip() or type(exc).__name__
            held = False
        else:
            self._answered[job.name] = time.monotonic()
            self._failing.pop(job.name, None)
        if held:
            self._held.add(job.name)
        else:
            self._held.discard(job.name)
        return held

    async def _run(self, job: Job) -> None:
        renewer = asyncio.create_task(asyncio.sleep(0) if job.everywhere else self._renew(job))
        started = time.monotonic()
        try:
            await job.run()
        except Exception:
            log.exception("job failed", extra={"job": job.name, "holder": self.holder})
        else:
            log.debug("job ran", extra={
                "job": job.name, "holder": self.holder, "seconds": round(time.monotonic() - started, 3),
            })
        finally:
            renewer.cancel()

    async def _renew(self, job: Job) -> None:
        """Keep the lease through a run that lasts longer than an interval."""
        while True:
            await asyncio.sleep(job.try_seconds(self.max_lease))
            if not await self._lease(job):
                log.warning("a job lost its lease while running", extra={"job": job.name, "holder": self.holder})
