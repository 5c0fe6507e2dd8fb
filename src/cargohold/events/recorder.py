"""Recording events: the one call the service makes for each change, inside the change's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .log import EventLog
from .model import Event


class Targets(Protocol):
    """Which webhook endpoints must hear of an event (their names); none for most."""

    async def __call__(self, tx: EventLog, event: Event) -> Sequence[str]: ...


async def no_targets(tx: EventLog, event: Event) -> Sequence[str]:
    return ()


class Recorder:
    """Writes each event to the log, with a pending delivery for every endpoint ``targets`` names."""

    def __init__(self, targets: Targets = no_targets) -> None:
        self.targets = targets

    async def record(self, tx: EventLog, event: Event) -> None:
        """In the transaction of the change ``event`` records: both are committed, or neither."""
        await tx.add_event(event, await self.targets(tx, event))
