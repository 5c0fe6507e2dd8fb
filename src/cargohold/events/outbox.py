"""The outbox beside the event log: one delivery per (event, webhook endpoint), and what delivering needs of it.

A delivery is ``pending`` until an attempt succeeds (``delivered``) or its
endpoint's ``max_attempts`` have failed (``dead``: kept, listed, redeliverable).
Deliverers in any number of processes share the rows: an endpoint's next
delivery (its pending one of the lowest event ``seq``) is claimed atomically
with a lease (``locked_until``), posted outside any transaction, then finished
by its claimant. A lease that expires (its process died mid-attempt) makes the
delivery claimable again: delivery is at least once, in event order per endpoint.

The metadata store implements both protocols (``cargohold.metadata``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from .model import Event


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    endpoint: str
    state: DeliveryState
    #: attempts begun, this one included once claimed
    attempts: int
    next_attempt_at: float
    event: Event
    #: the event's order in the log
    event_seq: int
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: float | None = None
    locked_until: float | None = None


@dataclass(frozen=True, slots=True)
class NextDelivery:
    """An endpoint's next pending delivery, as a deliverer looks at it before claiming it."""

    id: int
    next_attempt_at: float
    locked_until: float | None


class Outbox(Protocol):
    async def next_delivery(self, endpoint: str) -> NextDelivery | None:
        """The pending delivery of ``endpoint`` with the lowest event seq, if any (a read; no claim)."""
        ...

    async def claim_deliveries(
        self, endpoint: str, holder: str, now: float, lease_until: float, limit: int,
    ) -> list[Delivery]:
        """Atomically take ``endpoint``'s next delivery if it is due at ``now`` and not leased to another,
        with the due ones that follow it in event order (``limit`` in all): lease them to ``holder`` until
        ``lease_until`` and count an attempt of each. Empty if the next one is not there to take."""
        ...

    async def finish_deliveries(
        self, delivery_ids: Sequence[int], holder: str, *, delivered: bool, status: int | None, error: str | None,
        retry_at: float, max_attempts: int, now: float,
    ) -> int:
        """Record ``holder``'s attempt of these deliveries: delivered, or failed and due again at ``retry_at``
        (each that has had ``max_attempts`` is dead instead). The number recorded: a delivery whose lease
        went to another claimant is theirs to record."""
        ...

    async def release_deliveries(self, delivery_ids: Sequence[int], holder: str) -> None:
        """Give claimed deliveries back without an outcome (a stop mid-attempt): due again at once."""
        ...

    async def deliveries(
        self, endpoint: str | None, state: DeliveryState | None, limit: int, before: int | None,
    ) -> list[Delivery]:
        """Deliveries newest first (by id), below ``before`` when given."""
        ...

    async def pending_deliveries(self) -> int:
        """How many deliveries wait to be sent, to every endpoint (the backlog)."""
        ...

    async def redeliver(self, delivery_id: int, now: float) -> Delivery | None:
        """Make a dead delivery pending again with fresh attempts; None if there is no dead delivery of that id."""
        ...


class RuntimeEndpoints(Protocol):
    """Webhook endpoints added at run time: their names and settings (a JSON object each)."""

    async def webhook_endpoints(self) -> Sequence[tuple[str, str]]: ...

    async def add_webhook_endpoint(self, name: str, settings: str, now: float) -> bool:
        """False if an endpoint of that name is there already."""
        ...

    async def remove_webhook_endpoint(self, name: str, now: float) -> bool:
        """Remove it; its pending deliveries turn dead (there is nobody to send them to). False if unknown."""
        ...
