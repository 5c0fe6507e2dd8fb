"""Counters and histograms counted in a plain dict and written to prometheus-client's metrics in batches.

A multiprocess metric's every change is a locked write into a memory-mapped file: a manifest GET's counts
written as they happen took ~10 µs (its request counter, duration, bytes and database statement), a tenth of
the ~75-100 µs of server CPU the whole request takes; added to dicts keyed by their labels, ~0.5 µs.
:class:`Batches` writes the sums out every :data:`FLUSH_SECONDS` (and before a scrape in this process, and
when the worker stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram

log: Final = logging.getLogger("cargohold.metrics")

#: how often the counts held in memory are written to the shared files
FLUSH_SECONDS: Final = 0.05

Labels = tuple[str, ...]


class Tally:
    """A counter's increments by label values, until flushed."""

    __slots__ = ("_counter", "pending")

    def __init__(self, counter: Callable[[], Counter]) -> None:
        self._counter = counter
        self.pending: dict[Labels, float] = {}

    def add(self, labels: Labels, amount: float = 1.0) -> None:
        pending = self.pending
        pending[labels] = pending.get(labels, 0.0) + amount

    def flush(self) -> None:
        if not self.pending:
            return
        pending, self.pending = self.pending, {}
        counter = self._counter()
        for labels, amount in pending.items():
            (counter.labels(*labels) if labels else counter).inc(amount)


class Timings:
    """A histogram's observations by label values, as bucket counts and a sum, until flushed."""

    __slots__ = ("_histogram", "bounds", "pending")

    def __init__(self, histogram: Callable[[], Histogram], buckets: Sequence[float]) -> None:
        self._histogram = histogram
        #: the buckets' upper bounds, +Inf last (as the histogram's)
        self.bounds = [*buckets, float("inf")]
        #: labels -> a count per bucket (not cumulative, as prometheus-client keeps them), then the sum
        self.pending: dict[Labels, list[float]] = {}

    def observe(self, labels: Labels, seconds: float) -> None:
        row = self.pending.get(labels)
        if row is None:
            row = self.pending[labels] = [0.0] * (len(self.bounds) + 1)
        row[bisect_left(self.bounds, seconds)] += 1
        row[-1] += seconds

    def flush(self) -> None:
        if not self.pending:
            return
        pending, self.pending = self.pending, {}
        histogram = self._histogram()
        for labels, row in pending.items():
            child = histogram.labels(*labels) if labels else histogram
            # what Histogram.observe does per observation, once per bucket for the batch
            for bucket, count in zip(child._buckets, row, strict=False):
                if count:
                    bucket.inc(count)
            child._sum.inc(row[-1])


class Flushable(Protocol):
    def flush(self) -> None: ...


class Batches:
    """Every batched metric of a worker, and the task that writes them out."""

    def __init__(self, parts: Sequence[Flushable]) -> None:
        self.parts = list(parts)
        self._task: asyncio.Task[None] | None = None

    def flush(self) -> None:
        for part in self.parts:
            part.flush()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="metrics-flush")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                self.flush()
            except OSError:  # /dev/shm full: counts of this batch are lost, not the worker
                log.exception("writing the metrics failed")
