"""Managing webhooks at run time: what ``/admin/v1/webhooks`` and ``cargohold webhooks`` both do.

Endpoints of the configuration are listed and tested but not changed here (they
change with the configuration); endpoints added here live in the database and
take effect in every process at once. A name belongs to one endpoint, whichever
side it is on. Secrets and header values are never shown.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar, Final, Protocol

from ..config import ConfigError, WebhookEndpoint
from ..events.outbox import Delivery, DeliveryState, Outbox, RuntimeEndpoints
from .endpoints import Endpoint, Endpoints, endpoint_json, parse_endpoint
from .payload import Links, Source, rfc3339, test_body
from .sender import Sender

#: a listing's longest page
MAX_PAGE: Final = 1000


class WebhookError(Exception):
    """A refused webhook operation; ``code`` is its error code (``errcodes.OTHER_STATUSES`` has its status)."""

    code: ClassVar[str] = "WEBHOOK_INVALID"


class WebhookInvalid(WebhookError):
    code = "WEBHOOK_INVALID"


class WebhookUnknown(WebhookError):
    code = "WEBHOOK_UNKNOWN"


class WebhookExists(WebhookError):
    code = "WEBHOOK_EXISTS"


class WebhookReadOnly(WebhookError):
    code = "WEBHOOK_READ_ONLY"


class DeliveryUnknown(WebhookError):
    code = "DELIVERY_UNKNOWN"


class WebhookStore(Outbox, RuntimeEndpoints, Protocol):
    """The metadata store, as far as managing webhooks goes."""


def endpoint_view(endpoint: Endpoint) -> dict[str, Any]:
    s = endpoint.settings
    return {
        "name": s.name, "url": s.url, "source": endpoint.source, "format": s.format, "disabled": s.disabled,
        "actions": s.actions, "repositories": s.repositories,
        "ignore": {"mediatypes": [*s.ignoredmediatypes, *s.ignore.mediatypes], "actions": s.ignore.actions},
        "timeout_seconds": s.timeout_seconds, "backoff_seconds": s.backoff_seconds, "max_attempts": s.max_attempts,
        "signed": bool(s.secret), "headers": sorted(s.headers),
    }


def delivery_view(delivery: Delivery) -> dict[str, Any]:
    event = delivery.event
    pending = delivery.state is DeliveryState.PENDING
    return {
        "id": delivery.id, "event_id": event.id, "event_seq": delivery.event_seq, "endpoint": delivery.endpoint,
        "state": str(delivery.state), "attempts": delivery.attempts, "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "next_attempt": rfc3339(delivery.next_attempt_at) if pending else None,
        "delivered_at": rfc3339(delivery.delivered_at) if delivery.delivered_at is not None else None,
        "action": str(event.action), "repository": event.repository, "tag": event.tag, "digest": event.digest,
        "timestamp": rfc3339(event.at),
    }


class WebhookAdmin:
    def __init__(self, configured: Sequence[WebhookEndpoint], store: WebhookStore, links: Links,
                 source: Source) -> None:
        self.store = store
        self.endpoints = Endpoints(configured, store)
        self.links = links
        self.source = source

    async def endpoint_list(self) -> list[dict[str, Any]]:
        return [endpoint_view(e) for e in sorted((await self.endpoints.all()).values(), key=lambda e: e.name)]

    async def _endpoint(self, name: str) -> Endpoint:
        found = (await self.endpoints.all()).get(name)
        if found is None:
            raise WebhookUnknown(f"no webhook endpoint named {name!r}")
        return found

    async def add(self, data: Any) -> dict[str, Any]:
        try:
            settings = parse_endpoint(data)
        except ConfigError as exc:
            raise WebhookInvalid(str(exc)) from None
        if settings.name in self.endpoints.configured:
            raise WebhookExists(f"the configuration has an endpoint named {settings.name!r}")
        if not await self.store.add_webhook_endpoint(settings.name, endpoint_json(settings), time.time()):
            raise WebhookExists(f"there is already a webhook endpoint named {settings.name!r}")
        return endpoint_view(Endpoint(settings, "runtime"))

    async def remove(self, name: str) -> None:
        if name in self.endpoints.configured:
            raise WebhookReadOnly(f"{name!r} is an endpoint of the configuration: remove it there")
        if not await self.store.remove_webhook_endpoint(name, time.time()):
            raise WebhookUnknown(f"no webhook endpoint named {name!r}")

    async def test(self, name: str) -> dict[str, Any]:
        """Send a test event now, outside the outbox (nothing is recorded); what the receiver answered."""
        endpoint = await self._endpoint(name)
        content, content_type = test_body(endpoint.settings.format, self.links, self.source, time.time())
        sender = Sender()
        try:
            outcome = await sender.post(endpoint.settings, content, content_type, [("X-Cargohold-Event", "test")])
        finally:
            await sender.close()
        return {"endpoint": name, "delivered": outcome.delivered, "status": outcome.status, "error": outcome.error,
                "seconds": round(outcome.seconds, 3)}

    async def deliveries(
        self, endpoint: str | None = None, state: str | None = None, limit: int = 100, before: int | None = None,
    ) -> list[dict[str, Any]]:
        try:
            wanted = DeliveryState(state) if state else None
        except ValueError:
            raise WebhookInvalid(f"state: cannot use {state!r} (must be pending, delivered or dead)") from None
        if not 1 <= limit <= MAX_PAGE:
            raise WebhookInvalid(f"limit: cannot use {limit} (must be between 1 and {MAX_PAGE})")
        found = await self.store.deliveries(endpoint, wanted, limit, before)
        return [delivery_view(d) for d in found]

    async def redeliver(self, delivery_id: int) -> dict[str, Any]:
        found = await self.store.redeliver(delivery_id, time.time())
        if found is None:
            raise DeliveryUnknown(f"no dead delivery {delivery_id} (only a dead delivery is redelivered)")
        return delivery_view(found)
