"""Readiness: each dependency's check, cached per process for a moment, so that ``/readyz`` stays cheap
however often it is asked.

A check is an async function that returns while its dependency can serve and raises (the exception's
text says why) when it cannot. :class:`Readiness` runs each check at most once per :data:`CACHE_SECONDS`
and one probe at a time: concurrent callers await the probe in flight. An answer waits at most
:data:`ANSWER_SECONDS` for its checks; one still running then is reported as timed out, and its probe
goes on (the next answers await it, and its result is cached when it comes).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Final

log: Final = logging.getLogger("cargohold.readiness")

#: how long a check's result is reused. A balancer asks every few seconds but a scrape storm asks
#: hundreds of times a second: this keeps the storm to a couple of probes a second per worker, while
#: an outage (this, then at most ANSWER_SECONDS) still shows within 2 s
CACHE_SECONDS: Final = 0.5
#: the longest an answer waits for its checks: a dependency that hangs fails readiness, never hangs it
ANSWER_SECONDS: Final = 1.25
#: a probe that never ends (a check without a timeout of its own) is given up, so that a new one can start
PROBE_LIMIT_SECONDS: Final = 10.0

Check = Callable[[], Awaitable[None]]


class CachedCheck:
    """One check: its last result, kept for ``period`` seconds after it came, and its probe in flight."""

    def __init__(self, name: str, check: Check, period: float = CACHE_SECONDS, limit: float = PROBE_LIMIT_SECONDS):
        self.name = name
        self._check = check
        self._period = period
        self._limit = limit
        #: why the last probe failed (None: it passed) and until when that holds (monotonic)
        self._reason: str | None = None
        self._until = -math.inf
        self._probe: asyncio.Task[str | None] | None = None

    def probe(self) -> asyncio.Task[str | None] | None:
        """The probe to await: the one in flight, or a new one; None while the last result holds."""
        if self._probe is None and time.monotonic() >= self._until:
            self._probe = asyncio.create_task(self._run(), name=f"readiness {self.name}")
        return self._probe

    @property
    def reason(self) -> str | None:
        """Why the last probe failed; None if it passed."""
        return self._reason

    async def _run(self) -> str | None:
        limit = asyncio.timeout(self._limit)
        try:
            async with limit:
                await self._check()
            reason = None
        except Exception as exc:  # whatever stops a dependency from serving fails its check
            reason = f"timed out: no answer within {self._limit:g} s" if limit.expired() \
                else str(exc).strip() or type(exc).__name__
        if reason != self._reason:
            if reason is None:
                log.info("readiness check passes again", extra={"check": self.name})
            else:
                log.warning("readiness check failed", extra={"check": self.name, "reason": reason})
        self._reason, self._until, self._probe = reason, time.monotonic() + self._period, None
        return reason


class Readiness:
    """The checks of one process, by name; :meth:`failed` tells which fail now."""

    def __init__(self, period: float = CACHE_SECONDS, answer_seconds: float = ANSWER_SECONDS):
        self._period = period
        self._answer_seconds = answer_seconds
        self._checks: dict[str, CachedCheck] = {}

    def add_check(self, name: str, check: Check) -> None:
        """Have readiness depend on ``check`` too, reported under ``name``."""
        if name in self._checks:
            raise ValueError(f"a readiness check named {name!r} exists already")
        self._checks[name] = CachedCheck(name, check, self._period)

    async def failed(self) -> dict[str, str]:
        """Which checks fail, and why; empty when every one passes."""
        probes = {name: check.probe() for name, check in self._checks.items()}
        running = {probe for probe in probes.values() if probe is not None}
        if running:
            # wait() cancels nothing: a probe still running goes on for the next answers
            await asyncio.wait(running, timeout=self._answer_seconds)
        failed: dict[str, str] = {}
        for name, check in self._checks.items():
            probe = probes[name]
            if probe is not None and not probe.done():
                failed[name] = f"timed out: no answer within {self._answer_seconds:g} s"
            elif (reason := probe.result() if probe is not None else check.reason) is not None:
                failed[name] = reason
        return failed
