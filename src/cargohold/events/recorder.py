"""Recording events: the one call the service makes for each change, inside the change's transaction.

Reads (pulls) are off the request's path: :meth:`Recorder.read` only appends
who, when and what to this worker's list (no event is made there, no id drawn);
a task started with the worker makes the events and writes them in one
transaction at least every :data:`FLUSH_SECONDS`, as soon as it holds
:data:`FLUSH_EVENTS`, and when the worker stops. A worker killed hard loses
what it held: at most about one second of reads. Changes are never batched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

from .log import EventLog
from .model import Action, Event, event_ids
from .origin import current_origin

log: Final = logging.getLogger("cargohold.events")

#: the longest a read waits in memory before it is written
FLUSH_SECONDS: Final = 1.0
#: a batch this large is written at once, without waiting for the second to pass
FLUSH_EVENTS: Final = 500
#: reads held while the database refuses them; past this, the oldest are dropped (and logged)
MAX_HELD: Final = 50_000


#: a read held for the next batch: actor, actor kind, address, user agent, request id, host, method, time,
#: action, target
_Read = tuple[str | None, str, str, str, str, str, str, float, Action, Mapping[str, Any]]


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
        #: each read held: who and from where (copied, so the request is not kept), when, what
        self._pending: list[_Read] = []
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def record(self, tx: EventLog, event: Event) -> None:
        """In the transaction of the change ``event`` records: both are committed, or neither."""
        await tx.add_event(event, await self.targets(tx, event))

    def read(self, action: Action, **target: Any) -> None:
        """Hold a read by the current origin for the next batch: no I/O, no await, no event made yet."""
        if self.reads is None:
            return
        who = current_origin()
        self._pending.append((who.actor, who.actor_kind, who.address, who.user_agent, who.request_id, who.host,
                              who.method, time.time(), action, target))
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

    async def flush(self) -> bool:
        """Write the reads held now, in one transaction; kept for the next try if the database refuses
        (then False)."""
        if self.reads is None or not self._pending:
            return True
        batch, self._pending = self._pending, []
        self._full.clear()
        try:
            # On the event loop, inline: measured on 2 CPUs, a thread for this (and a connection of
            # its own) served fewer pulls, its Python and SQLite competing with the loop for the CPUs.
            events = _events(batch)
            if self.targets is no_targets:
                await self.reads.add_events([(event, ()) for event in events])
            else:
                await self.reads.add_events([(event, await self.targets(self.reads, event)) for event in events])
        except Exception:
            log.exception("recording reads failed; they are kept for the next try", extra={"count": len(batch)})
            self._pending[:0] = batch
            if len(self._pending) > MAX_HELD:
                dropped = len(self._pending) - MAX_HELD
                del self._pending[:dropped]
                log.error("reads dropped: the database refused them too long", extra={"count": dropped})
            return False
        return True

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), FLUSH_SECONDS)
            if not await self.flush():
                await asyncio.sleep(FLUSH_SECONDS)  # not again at once, however many reads arrive


def _events(batch: Sequence[_Read]) -> list[Event]:
    return [
        Event(action=action, actor=actor, actor_kind=kind, address=address, user_agent=agent, request_id=request_id,
              host=host, method=method, at=at, id=event_id, **target)
        for (actor, kind, address, agent, request_id, host, method, at, action, target), event_id
        in zip(batch, event_ids(len(batch)), strict=True)
    ]
