"""Recording events: the one call the service makes for each change, inside the change's transaction.

Reads (pulls) are off the request's path: :meth:`Recorder.read` only counts
the read under who, from where and what (no event is made there, no id drawn);
a task started with the worker makes the events and writes them in one
transaction at least every :data:`FLUSH_SECONDS`, as soon as it holds
:data:`FLUSH_EVENTS` distinct reads, and when the worker stops. Identical reads
in one window (the same account, address, user agent and target) are one event
whose ``detail.count`` says how many there were, with the first one's time and
request id (and ``detail.until``, when the batch was written): a pull storm costs a row per client a
second, not a row per request (one indexed row costs more than the request).
A worker killed hard loses what it held: at most about one second of reads.
Changes are never batched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Final, Protocol

from .log import EventLog
from .model import Action, Event, event_ids
from .origin import current_origin

log: Final = logging.getLogger("cargohold.events")

#: the longest a read waits in memory before it is written
FLUSH_SECONDS: Final = 1.0
#: a batch of this many distinct reads is written at once, without waiting for the second to pass
FLUSH_EVENTS: Final = 500
#: reads held while the database refuses them; past this, the oldest are dropped (and logged)
MAX_HELD: Final = 50_000


#: what makes two reads the same: actor, actor kind, address, user agent, host, method, action, and the
#: target's repository, tag, digest, media type and size
_ReadKey = tuple[str | None, str, str, str, str, str, Action, str, str | None, str | None, str | None, int | None]


class _Held:
    """Reads of one key in this window: how many, and the first's time and request id."""

    __slots__ = ("count", "first_at", "request_id")

    def __init__(self, at: float, request_id: str) -> None:
        self.count, self.first_at, self.request_id = 1, at, request_id


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
        #: the reads held, by who, from where and what (copied, so the request is not kept)
        self._pending: dict[_ReadKey, _Held] = {}
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def record(self, tx: EventLog, event: Event) -> None:
        """In the transaction of the change ``event`` records: both are committed, or neither."""
        await tx.add_event(event, await self.targets(tx, event))

    def read(
        self,
        action: Action,
        repository: str,
        tag: str | None = None,
        digest: str | None = None,
        media_type: str | None = None,
        size: int | None = None,
    ) -> None:
        """Count a read by the current origin for the next batch: no I/O, no await, no event made yet."""
        if self.reads is None:
            return
        who = current_origin()
        key = (who.actor, who.actor_kind, who.address, who.user_agent, who.host, who.method, action,
               repository, tag, digest, media_type, size)
        held = self._pending.get(key)
        if held is not None:
            held.count += 1
            return
        self._pending[key] = _Held(time.time(), who.request_id)
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
        batch, self._pending = self._pending, {}
        self._full.clear()
        try:
            # On the event loop, inline: measured on 2 CPUs, a thread for this (and a connection of
            # its own) served fewer pulls, its Python and SQLite competing with the loop for the CPUs.
            events = _events(batch, time.time())
            if self.targets is no_targets:
                await self.reads.add_events([(event, ()) for event in events])
            else:
                await self.reads.add_events([(event, await self.targets(self.reads, event)) for event in events])
        except Exception:
            log.exception("recording reads failed; they are kept for the next try", extra={"count": len(batch)})
            for key, held in self._pending.items():  # arrived during the failed write: after the batch's
                if key in batch:
                    batch[key].count += held.count
                else:
                    batch[key] = held
            self._pending = batch
            if len(self._pending) > MAX_HELD:
                oldest = sorted(self._pending, key=lambda k: self._pending[k].first_at)
                dropped = oldest[: len(self._pending) - MAX_HELD]
                for key in dropped:
                    del self._pending[key]
                log.error("reads dropped: the database refused them too long", extra={"count": len(dropped)})
            return False
        return True

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), FLUSH_SECONDS)
            if not await self.flush():
                await asyncio.sleep(FLUSH_SECONDS)  # not again at once, however many reads arrive


def _events(batch: Mapping[_ReadKey, _Held], written_at: float) -> list[Event]:
    return [
        Event(action=action, actor=actor, actor_kind=kind, address=address, user_agent=agent,
              request_id=held.request_id, host=host, method=method, at=held.first_at, id=event_id,
              repository=repository, tag=tag, digest=digest, media_type=media_type, size=size,
              detail={"count": held.count, "until": written_at} if held.count > 1 else {})
        for ((actor, kind, address, agent, host, method, action, repository, tag, digest, media_type, size), held),
        event_id in zip(batch.items(), event_ids(len(batch)), strict=True)
    ]
