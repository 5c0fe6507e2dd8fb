"""PostgreSQL metadata store: for registries whose replicas share one database (the SQL:
:mod:`.sql_registry`; connections and transactions: :mod:`.postgres_db`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ..events.model import Event
from ..events.outbox import Delivery, DeliveryState, NextDelivery
from ..memo import Memo
from . import postgres_webhooks
from .migrations import require_current
from .postgres_db import PostgresDatabase
from .postgres_schema import applied_versions
from .sql_registry import SqlMetadataStore

#: connections per worker process; a request holds one for one statement (or one unit of work)
POOL_SIZE: Final = 10


class PostgresMetadataStore(SqlMetadataStore):
    def __init__(self, url: str):
        self.url = url
        require_current(applied_versions(url), "postgres")
        db = PostgresDatabase(url, what="metadata", max_size=POOL_SIZE)
        super().__init__(db)
        self._pg = db
        #: events read back for their deliveries: each endpoint's delivery of an event reads it again
        self._decoded: Memo[int, Event] = Memo()

    # the outbox of webhook deliveries, and the endpoints added at run time

    async def next_delivery(self, endpoint: str) -> NextDelivery | None:
        return await postgres_webhooks.next_delivery(self._pg, endpoint)

    async def claim_deliveries(
        self, endpoint: str, holder: str, now: float, lease_until: float, limit: int,
    ) -> list[Delivery]:
        return await postgres_webhooks.claim_deliveries(
            self._pg, endpoint, holder, now, lease_until, limit, self._decoded)

    async def finish_deliveries(
        self, delivery_ids: Sequence[int], holder: str, *, delivered: bool, status: int | None, error: str | None,
        retry_at: float, max_attempts: int, now: float,
    ) -> int:
        return await postgres_webhooks.finish_deliveries(
            self._pg, delivery_ids, holder, delivered=delivered, status=status, error=error, retry_at=retry_at,
            max_attempts=max_attempts, now=now,
        )

    async def release_deliveries(self, delivery_ids: Sequence[int], holder: str) -> None:
        await postgres_webhooks.release_deliveries(self._pg, delivery_ids, holder)

    async def deliveries(
        self, endpoint: str | None, state: DeliveryState | None, limit: int, before: int | None,
    ) -> list[Delivery]:
        return await postgres_webhooks.deliveries(self._pg, endpoint, state, limit, before)

    async def redeliver(self, delivery_id: int, now: float) -> Delivery | None:
        return await postgres_webhooks.redeliver(self._pg, delivery_id, now)

    async def webhook_endpoints(self) -> Sequence[tuple[str, str]]:
        return await postgres_webhooks.webhook_endpoints(self._pg)

    async def add_webhook_endpoint(self, name: str, settings: str, now: float) -> bool:
        return await postgres_webhooks.add_webhook_endpoint(self._pg, name, settings, now)

    async def remove_webhook_endpoint(self, name: str, now: float) -> bool:
        return await postgres_webhooks.remove_webhook_endpoint(self._pg, name, now)

