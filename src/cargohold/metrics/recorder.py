"""What the hooks call. One :class:`Metrics` per worker when metrics are on; the module's functions are
the hooks placed in the code they count, and do nothing while no :class:`Metrics` is active."""

from __future__ import annotations

import time
from typing import Final

from .batched import Batches, Tally, Timings
from .families import OPERATION_BUCKETS, Families
from .requests import RequestTally

#: the upload routes' methods that send a body
_UPLOADING: Final = frozenset({("upload", "PATCH"), ("upload", "PUT"), ("uploads", "POST")})


class Metrics:
    def __init__(self) -> None:
        self._families: Families | None = None
        self.requests = RequestTally(self.families)
        self.storage_seconds = Timings(lambda: self.families().storage_seconds, OPERATION_BUCKETS)
        self.storage_errors = Tally(lambda: self.families().storage_errors)
        self.db_seconds = Timings(lambda: self.families().db_seconds, OPERATION_BUCKETS)
        self.tokens = Tally(lambda: self.families().tokens)
        self.login_failures = Tally(lambda: self.families().login_failures)
        self.webhook_deliveries = Tally(lambda: self.families().webhook_deliveries)
        self.gc_runs = Tally(lambda: self.families().gc_runs)
        self.gc_bytes_freed = Tally(lambda: self.families().gc_bytes_freed)
        self.proxy_upstream = Tally(lambda: self.families().proxy_upstream)
        self.proxy_cache = Tally(lambda: self.families().proxy_cache)
        self.batches = Batches([
            self.requests, self.storage_seconds, self.storage_errors, self.db_seconds, self.tokens,
            self.login_failures, self.webhook_deliveries, self.gc_runs, self.gc_bytes_freed, self.proxy_upstream,
            self.proxy_cache,
        ])

    def families(self) -> Families:
        """Made on first use: in a worker, when it first flushes, never in the serve process."""
        if self._families is None:
            self._families = Families()
        return self._families

    def uploading(self, route: str, method: str) -> bool:
        """Count an upload request in progress (until :meth:`upload_ended`); whether it is one."""
        if (route, method) not in _UPLOADING:
            return False
        self.families().uploads.inc()
        return True

    def upload_ended(self) -> None:
        self.families().uploads.dec()


#: the worker's metrics; None: metrics are off and every hook returns at once
active: Metrics | None = None


def activate(metrics: Metrics | None) -> None:
    global active
    active = metrics


def db_query(started: float) -> None:
    """A database statement begun at ``started`` (:func:`time.perf_counter`) is over."""
    if active is not None:
        active.db_seconds.observe((), time.perf_counter() - started)


def token(outcome: str) -> None:
    """A token request was answered: ``issued`` or ``refused``."""
    if active is not None:
        active.tokens.add((outcome,))


def login_failed() -> None:
    if active is not None:
        active.login_failures.add(())


def webhook_delivery(outcome: str, count: int) -> None:
    """``count`` deliveries (one envelope) were ``delivered``, ``failed`` (to be retried) or ``dead``."""
    if active is not None:
        active.webhook_deliveries.add((outcome,), count)


def gc_run(bytes_freed: int) -> None:
    if active is not None:
        active.gc_runs.add(())
        active.gc_bytes_freed.add((), bytes_freed)


def proxy_upstream(status: int | None) -> None:
    """A pull-through cache's request upstream ended: taken (``2xx``), refused or failed with ``status``,
    or never answered (None: unreachable, timeout, TLS)."""
    if active is not None:
        code = "2xx" if status is not None and 200 <= status < 300 else str(status) if status else "none"
        active.proxy_upstream.add((code,))


def proxy_cache(hit: bool) -> None:
    if active is not None:
        active.proxy_cache.add(("hit" if hit else "miss",))
