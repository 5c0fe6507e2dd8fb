"""Recording events: the one call the service makes for each change, inside the change's transaction.

Reads (pulls) are off the hot path: :meth:`Recorder.read` only appends to this
worker's list; a task started with the worker writes the list in one
transaction at least every :data:`FLUSH_SECONDS`, as soon as it holds
:data:`FLUSH_EVENTS`, and when the worker stops. A worker killed hard loses
what it held: at most about one second of reads. Changes are never batched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Final, Protocol

from .log import EventLog
from .model import Event

log: Final = logging.getLogger("cargohold.events")

#: the longest a read waits in memory before it is written
FLUSH_SECONDS: Final = 1.0
#: a batch this large is written at once, without waiting for the second to pass
FLUSH_EVENTS: Final = 500
#: reads held while the database refuses them; past this, the oldest are dropped (and logged)
MAX_HELD: Final = 50_000


class Targets(Protocol):
    """Which webhook endpoints must hear of an event (their names); none for most."""

    async def __call__(self, tx: EventLog, event: Event) -> Sequence[str]: ...


async def no_targets(tx: EventLog, event: Event) -> Sequence[str]:
    return ()


class Recorder:
    """Writes each event to the log, with a pending delivery for every endpoint ``targets`` names.

    ``reads`` is the log the batched reads are written to (the metadata store);
    without one, reads are not recorded.
    """

    def __init__(
        self, targets: Targets = no_targets, *, reads: EventLog | None = None, blob_pulls: bool = False
    ) -> None:
        self.targets = targets
        self.reads = reads
        #: whether blob GETs are recorded (``audit.record_blob_pulls``); manifest GETs always are
        self.blob_pulls = blob_pulls
        self._pending: list[Event] = []
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def record(self, tx: EventLog, event: Event) -> None:
        """In the transaction of the change ``event`` records: both are committed, or neither."""
        await tx.add_event(event, await self.targets(tx, event))

    async def record_now(self, log: EventLog, event: Event) -> None:
        """An event of no registry change (a login, a token): one atomic statement of its own."""
        await log.add_event(event, await self.targets(log, event))

    def read(self, event: Event) -> None:
        """Hold a read for the next batch: no I/O, no await."""
        if self.reads is None:
            return
        self._pending.append(event)
        if len(self._pending) >= FLUSH_EVENTS:
            self._full.set()

    def start(self) -> None:
        """Start writing batches (in the worker's event loop)."""
        if self.reads is not None and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="event reads")

    async def stop(self) -> None:
        """Stop the batches and write what is held."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def flush(self) -> None:
        """Write the reads held now, in one transaction; kept for the next try if the database refuses."""
        if self.reads is None or not self._pending:
            return
        batch, self._pending = self._pending, []
        self._full.clear()
        try:
            await self.reads.add_events([(event, await self.targets(self.reads, event)) for event in batch])
        except Exception:
            log.exception("recording reads failed; they are kept for the next try", extra={"count": len(batch)})
            self._pending[:0] = batch
            if len(self._pending) > MAX_HELD:
                dropped = len(self._pending) - MAX_HELD
                del self._pending[:dropped]
                log.error("reads dropped: the database refused them too long", extra={"count": dropped})

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), FLUSH_SECONDS)
            await self.flush()
