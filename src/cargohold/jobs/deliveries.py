"""The delivery of webhooks from the outbox: in every process, one claimant per delivery.

Unlike the lease-held jobs, this one runs in every worker of every server on the
database: the outbox's atomic claim (:meth:`~cargohold.events.outbox.Outbox.claim_delivery`)
makes each attempt one process's. Each endpoint has a worker of its own, so a
receiver that hangs holds up nobody else's deliveries; a worker posts its
endpoint's deliveries in event order, those waiting together in one envelope
(up to the endpoint's ``batch_size``; the next ones are claimable only when
these are delivered or dead), outside any transaction. A
failed attempt is due again after ``backoff * 2**(attempts-1)`` seconds (at
most ``notifications.backoff_max``, +-20% jitter); after ``max_attempts`` the
delivery is dead. A worker looks for work every :data:`POLL_SECONDS`,
:data:`GATHER_SECONDS` after this process records an event for its endpoint, but
no sooner than :data:`DELIVERY_INTERVAL_SECONDS` after its last delivery (so a
burst's events share envelopes), and exactly when a retry falls due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable
from typing import Final

from ..events.model import Event
from ..events.outbox import Delivery, Outbox
from ..memo import Memo
from ..metrics import recorder as metrics
from ..webhooks import Endpoint, Endpoints, Links, Sender, Source
from ..webhooks.payload import encoded, envelope
from .activity import Activity
from .runner import Job

log: Final = logging.getLogger("cargohold.webhooks")

#: the longest a worker waits before it looks at the outbox again (events recorded by other processes)
POLL_SECONDS: Final = 1.0
#: a worker woken by a commit waits this long before it claims, so that the rest of a burst joins the envelope;
#: and after a delivery that did not fill its batch it claims again no sooner than DELIVERY_INTERVAL_SECONDS.
#: A burst's events then go in one envelope a second, not one claim, POST and mark each (measured: pushes with
#: ten endpoints took 1.66 times as long as with none when every commit woke the workers at once, the
#: deliveries' transactions and POSTs competing with the pushes for the CPUs and the database's write lock)
GATHER_SECONDS: Final = 0.25
DELIVERY_INTERVAL_SECONDS: Final = 1.0
#: a due delivery waits for a quiet moment in this process (no request in flight or just begun) at most this
#: long: delivering takes the event loop and CPU from the requests (about 26 us per event and endpoint, measured),
#: so a burst of pushes is served first and its events go out after it
YIELD_SECONDS: Final = 10.0
#: how often a waiting delivery looks whether the process is quiet
QUIET_POLL_SECONDS: Final = 0.02
#: a claim outlives its attempt's timeout by this much; then another process may take the delivery over
LEASE_MARGIN_SECONDS: Final = 5.0
JITTER: Final = 0.2


def retry_delay(attempts: int, backoff: float, backoff_max: float, rng: Callable[[], float] = random.random) -> float:
    """The wait after the ``attempts``-th failed attempt: doubling from ``backoff``, capped, +-20%."""
    delay = min(backoff_max, backoff * 2.0 ** min(attempts - 1, 60))
    return delay * (1.0 + JITTER * (2.0 * rng() - 1.0))


class DeliveryLoop:
    def __init__(
        self, outbox: Outbox, endpoints: Endpoints, sender: Sender, links: Links, source: Source, *,
        holder: str, backoff_max: float, poll: float = POLL_SECONDS, clock: Callable[[], float] = time.time,
        activity: Activity | None = None,
    ) -> None:
        self.outbox = outbox
        self.endpoints = endpoints
        self.sender = sender
        self.links = links
        self.source = source
        self.holder = holder
        self.backoff_max = backoff_max
        self.poll = poll
        self.clock = clock
        self.activity = activity
        self._current: dict[str, Endpoint] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        #: when each endpoint's worker last delivered a batch that was not full (the clock of GATHER and
        #: DELIVERY_INTERVAL, monotonic)
        self._delivered_at: dict[str, float] = {}
        #: each event as each format encodes it: ten endpoints send the same event ten times
        self._encoded: Memo[tuple[str, str], bytes] = Memo()
        endpoints.on_deliveries = self.wake

    def job(self) -> Job:
        return Job("deliver-webhooks", self.poll, self.run, everywhere=True)

    def wake(self) -> None:
        """Look for work now (this process recorded an event that has deliveries)."""
        for event in self._wake.values():
            event.set()

    async def run(self) -> None:
        """Keep one worker per endpoint until cancelled."""
        try:
            while True:
                try:
                    self._current = await self.endpoints.all()
                except Exception:
                    log.exception("reading the webhook endpoints failed")
                for name in self._current:
                    worker = self._workers.get(name)
                    if worker is None or worker.done():
                        self._wake[name] = asyncio.Event()
                        self._workers[name] = asyncio.create_task(self._work(name), name=f"webhook {name}")
                for name in set(self._workers) - set(self._current):
                    self._workers.pop(name).cancel()
                    self._wake.pop(name, None)
                await asyncio.sleep(self.poll)
        finally:
            workers = list(self._workers.values())
            self._workers.clear()
            for worker in workers:
                worker.cancel()
            for worker in workers:
                with contextlib.suppress(asyncio.CancelledError):
                    await worker

    async def _work(self, name: str) -> None:
        while True:
            try:
                wait = await self._step(name)
            except Exception:
                log.exception("webhook delivery failed", extra={"endpoint": name})
                wait = self.poll
            if wait > 0:
                wake = self._wake.get(name)
                if wake is None:
                    await asyncio.sleep(wait)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), wait)
                    if wake.is_set():  # a commit here: let the rest of its burst join it
                        since = time.monotonic() - self._delivered_at.get(name, -math.inf)
                        await asyncio.sleep(max(GATHER_SECONDS, DELIVERY_INTERVAL_SECONDS - since))
                    wake.clear()

    async def _step(self, name: str) -> float:
        """Deliver the endpoint's next deliveries if they are due; how long to wait before the next look."""
        endpoint = self._current.get(name)
        if endpoint is None:
            return self.poll
        now = self.clock()
        head = await self.outbox.next_delivery(name)
        if head is None:
            return self.poll
        due = max(head.next_attempt_at, head.locked_until or 0.0)
        if due > now:
            return min(self.poll, due - now)
        await self._quiet_moment(due + YIELD_SECONDS)
        now = self.clock()
        settings = endpoint.settings
        lease = settings.timeout_seconds + LEASE_MARGIN_SECONDS
        limit = 1 if settings.format == "quay" else settings.batch_size
        claimed = await self.outbox.claim_deliveries(name, self.holder, now, now + lease, limit)
        if not claimed:  # another process took them
            return min(self.poll, lease)
        delivered = await self._deliver(endpoint, claimed)
        # a failure's retry time is the outbox's (the next look finds it); a backlog drains at once
        if delivered and len(claimed) < limit:
            self._delivered_at[name] = time.monotonic()
            return DELIVERY_INTERVAL_SECONDS
        return 0.0

    async def _quiet_moment(self, deadline: float) -> None:
        """Wait until no request is being served here, or until ``deadline``."""
        while self.activity is not None and not self.activity.quiet() and self.clock() < deadline:
            await asyncio.sleep(QUIET_POLL_SECONDS)

    def _encode(self, format_name: str, event: Event) -> bytes:
        return self._encoded.make((format_name, event.id), lambda: encoded(format_name, event, self.links, self.source))

    async def _deliver(self, endpoint: Endpoint, deliveries: list[Delivery]) -> bool:
        """Post ``deliveries`` in one envelope and record the outcome; whether the receiver took them."""
        settings = endpoint.settings
        ids = [d.id for d in deliveries]
        head = deliveries[0]
        try:
            items = [self._encode(settings.format, d.event) for d in deliveries]
            content, content_type = envelope(settings.format, items)
        except Exception as exc:  # an event this format cannot carry: no attempt can ever succeed
            log.exception("a webhook payload cannot be built", extra={"endpoint": endpoint.name})
            await self.outbox.finish_deliveries(ids, self.holder, delivered=False, status=None,
                                                error=f"cannot build the payload: {exc!r}", retry_at=0.0,
                                                max_attempts=0, now=self.clock())
            return False
        extra = [("X-Cargohold-Event", ",".join(d.event.id for d in deliveries)),
                 ("X-Cargohold-Delivery", ",".join(map(str, ids))),
                 ("X-Cargohold-Attempt", ",".join(str(d.attempts) for d in deliveries))]
        try:
            outcome = await self.sender.post(settings, content, content_type, extra)
        except asyncio.CancelledError:  # stopping: another process (or the next start) sends them at once
            await self.outbox.release_deliveries(ids, self.holder)
            raise
        now = self.clock()
        retry_at = now + retry_delay(head.attempts, settings.backoff_seconds, self.backoff_max)
        recorded = await self.outbox.finish_deliveries(
            ids, self.holder, delivered=outcome.delivered, status=outcome.status, error=outcome.error,
            retry_at=retry_at, max_attempts=settings.max_attempts, now=now,
        )
        dead = head.attempts >= settings.max_attempts
        metrics.webhook_delivery("delivered" if outcome.delivered else "dead" if dead else "failed", len(ids))
        if outcome.delivered:
            return True
        log.log(logging.ERROR if dead else logging.WARNING,
                "webhook delivery failed" + ("; it is dead" if dead else ""), extra={
                    "endpoint": endpoint.name, "deliveries": ids, "attempts": head.attempts,
                    "status": outcome.status, "error": outcome.error, "lease_lost": recorded < len(ids),
                })
        return False
