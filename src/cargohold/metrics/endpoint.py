"""``GET /metrics``: every worker's files merged (prometheus-client's MultiProcessCollector), in the
Prometheus text format, after the files of workers that ended are folded into the archive (:mod:`.archive`).

On the main port it asks for ``Authorization: Bearer <metrics.token_file's token>``; on a listener of its
own (``metrics.listen``) it asks for nothing.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector

from ..errcodes import Unauthorized
from ..http import Request, Response
from ..http.routing import Route, route
from ..metadata.store import MetadataError
from . import archive

if TYPE_CHECKING:
    from ..api.routes import Endpoint
    from ..events.outbox import Outbox
    from .recorder import Metrics

log: Final = logging.getLogger("cargohold.metrics")

PATH: Final = "/metrics"
#: the webhook backlog is a database count: one per this many seconds, however often scrapes come
BACKLOG_SECONDS: Final = 10.0
#: a database that does not answer by then is not waited for: the scrape answers without the backlog
BACKLOG_TIMEOUT: Final = 2.0


class Backlog:
    """The webhook deliveries waiting, counted at most every :data:`BACKLOG_SECONDS`."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        #: None while the database cannot say: the scrape goes on without it
        self.value: int | None = None
        self._counted = -BACKLOG_SECONDS

    async def refresh(self) -> None:
        if time.monotonic() - self._counted < BACKLOG_SECONDS:
            return
        self._counted = time.monotonic()
        try:
            async with asyncio.timeout(BACKLOG_TIMEOUT):
                self.value = await self.outbox.pending_deliveries()
        except (MetadataError, OSError, TimeoutError):
            self.value = None
            log.warning("counting the webhook backlog failed", exc_info=True)

    def collect(self) -> Iterable[Metric]:
        if self.value is not None:
            yield GaugeMetricFamily("cargohold_webhook_backlog", "Webhook deliveries waiting to be sent", self.value)


def read_token(path: str) -> bytes:
    """The scrapers' token: the file's first line (a trailing newline is not part of it)."""
    with open(path, "rb") as file:
        token = file.readline().strip()
    if not token:
        raise ValueError(f"the metrics token file {path} is empty")
    return token


class MetricsEndpoint:
    def __init__(self, directory: str, metrics: Metrics | None, backlog: Backlog, token: bytes | None) -> None:
        self.directory = directory
        #: this process's metrics, flushed before each scrape (none in the listener process)
        self.metrics = metrics
        self.backlog = backlog
        self.token = token
        self.registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(self.registry, path=directory)  # type: ignore[no-untyped-call]
        self.registry.register(backlog)

    def routes(self) -> list[Route[Endpoint]]:
        methods: dict[str, Endpoint] = {"GET": self.get, "HEAD": self.get}
        return [route("metrics", PATH, methods, marker=PATH, guarded=False)]

    async def get(self, request: Request) -> Response:
        if self.token is not None:
            self._authorize(request.headers.get("authorization", ""))
        if self.metrics is not None:
            self.metrics.batches.flush()
        await self.backlog.refresh()
        body = await asyncio.to_thread(self.render)
        return Response(200, [(b"content-type", CONTENT_TYPE_PLAIN_0_0_4.encode())], body)

    def render(self) -> bytes:
        archive.fold_dead(self.directory)
        with archive.reading(self.directory):
            return generate_latest(self.registry)

    def _authorize(self, header: str) -> None:
        assert self.token is not None
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("latin-1"), self.token):
            raise Unauthorized("/metrics needs the metrics bearer token",
                               headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
