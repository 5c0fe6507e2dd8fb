"""What the events need of the metadata database: an append-only log with an outbox beside it.

The metadata store's transaction object implements it (``cargohold.metadata``), so
an event is written in the same transaction as the change it records.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .model import Event


class EventLog(Protocol):
    async def add_event(self, event: Event, deliver_to: Sequence[str] = ()) -> int:
        """Append ``event`` and one pending delivery per endpoint name in ``deliver_to``; its ``seq``.

        Inside the caller's transaction when there is one: committed with the change, or not at all.
        """
        ...

    async def add_events(self, events: Sequence[tuple[Event, Sequence[str]]]) -> None:
        """Append several events (and their deliveries) in one transaction: the batched reads."""
        ...
