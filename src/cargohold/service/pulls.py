"""When each manifest was last pulled: held in memory per worker, written in batches.

A manifest GET is the hottest request: :meth:`PullTimes.pulled` only notes the
latest time per (repository, digest) in a dict, with no I/O. A task started
with the worker writes what it holds in one transaction every
:data:`FLUSH_SECONDS` (an upsert that only moves ``pulled_at`` forward, so
workers and replicas writing the same rows in any order agree), and again
when the worker stops. A worker killed hard loses at most one window of pull
times; a refused write is kept for the next try.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Final, Protocol

log: Final = logging.getLogger("cargohold.pulls")

#: the longest a pull time waits in memory before it is written
FLUSH_SECONDS: Final = 5.0
#: (repository, digest) pairs held while the database refuses them; past this, new ones are dropped
MAX_HELD: Final = 100_000


class PullLog(Protocol):
    """The metadata store's :meth:`record_pulls`."""

    async def record_pulls(self, pulls: Sequence[tuple[str, str, int]]) -> None: ...


class PullTimes:
    def __init__(self, store: PullLog, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.store = store
        self.flush_seconds = flush_seconds
        self._pending: dict[tuple[str, str], float] = {}
        self._task: asyncio.Task[None] | None = None

    def pulled(self, repository: str, digest: str) -> None:
        """A GET served this manifest now: no I/O, no await."""
        pending = self._pending
        if len(pending) < MAX_HELD or (repository, digest) in pending:
            pending[(repository, digest)] = time.time()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="pull times")

    async def stop(self) -> None:
        """Stop the batches and write what is held."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def flush(self) -> bool:
        """Write the pull times held now; kept for the next try if the database refuses (then False)."""
        if not self._pending:
            return True
        batch, self._pending = self._pending, {}
        try:
            await self.store.record_pulls([(repository, digest, int(at)) for (repository, digest), at in batch.items()])
        except Exception:
            log.exception("recording pull times failed; they are kept for the next try", extra={"count": len(batch)})
            for key, at in self._pending.items():  # arrived during the failed write: later than the batch's
                batch[key] = at
            self._pending = batch
            return False
        return True

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            await self.flush()
