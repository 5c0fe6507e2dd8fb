"""SQLite metadata store: the embedded default (the SQL: :mod:`.sql_registry`; the connection: :mod:`.sqlite_db`)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..events.model import Event
from ..events.outbox import Delivery, DeliveryState, NextDelivery
from ..memo import Memo
from . import sqlite_webhooks
from .migrations import require_current
from .sql_registry import SqlMetadataStore
from .sqlite_db import SqliteDatabase
from .sqlite_schema import applied_versions


class SqliteMetadataStore(SqlMetadataStore):
    def __init__(self, path: str):
        self.path = path
        if path != ":memory:" and not os.path.exists(path):  # refused without creating an empty file
            require_current((), "sqlite")
        db = SqliteDatabase(path, what="metadata")
        try:
            require_current(applied_versions(db), "sqlite")
        except BaseException:
            db.close()
            raise
        super().__init__(db)
        self._sqlite = db
        #: events read back for their deliveries: each endpoint's delivery of an event reads it again
        self._decoded: Memo[int, Event] = Memo()

    # the outbox of webhook deliveries, and the endpoints added at run time

    async def next_delivery(self, endpoint: str) -> NextDelivery | None:
        return sqlite_webhooks.next_delivery(self._sqlite, endpoint)

    async def claim_deliveries(
        self, endpoint: str, holder: str, now: float, lease_until: float, limit: int,
    ) -> list[Delivery]:
        return sqlite_webhooks.claim_deliveries(self._sqlite, endpoint, holder, now, lease_until, limit, self._decoded)

    async def finish_deliveries(
        self, delivery_ids: Sequence[int], holder: str, *, delivered: bool, status: int | None, error: str | None,
        retry_at: float, max_attempts: int, now: float,
    ) -> int:
        return sqlite_webhooks.finish_deliveries(
            self._sqlite, delivery_ids, holder, delivered=delivered, status=status, error=error, retry_at=retry_at,
            max_attempts=max_attempts, now=now,
        )

    async def release_deliveries(self, delivery_ids: Sequence[int], holder: str) -> None:
        sqlite_webhooks.release_deliveries(self._sqlite, delivery_ids, holder)

    async def deliveries(
        self, endpoint: str | None, state: DeliveryState | None, limit: int, before: int | None,
    ) -> list[Delivery]:
        return sqlite_webhooks.deliveries(self._sqlite, endpoint, state, limit, before)

    async def redeliver(self, delivery_id: int, now: float) -> Delivery | None:
        return sqlite_webhooks.redeliver(self._sqlite, delivery_id, now)

    async def webhook_endpoints(self) -> Sequence[tuple[str, str]]:
        return sqlite_webhooks.webhook_endpoints(self._sqlite)

    async def add_webhook_endpoint(self, name: str, settings: str, now: float) -> bool:
        return sqlite_webhooks.add_webhook_endpoint(self._sqlite, name, settings, now)

    async def remove_webhook_endpoint(self, name: str, now: float) -> bool:
        return sqlite_webhooks.remove_webhook_endpoint(self._sqlite, name, now)
