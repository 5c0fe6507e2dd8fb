"""The HTTP requests' counts, durations and bytes: one dict entry per method, route and status, flushed
in batches (:mod:`.batched`); the hot path only adds numbers."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import Final

from .families import REQUEST_BUCKETS, Families

#: methods counted by name; any other is "other" (the method is the client's to choose)
METHODS: Final = frozenset({"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"})
#: the route label of a path no route matches
NO_ROUTE: Final = "other"
_BOUNDS: Final = [*REQUEST_BUCKETS, float("inf")]
# a row: count, seconds, bytes in, bytes out, then a count per bucket
_FIXED: Final = 4


class RequestTally:
    __slots__ = ("_families", "pending")

    def __init__(self, families: Callable[[], Families]) -> None:
        self._families = families
        self.pending: dict[tuple[str, str, int], list[float]] = {}

    def add(self, method: str, route: str, status: int, received: int, sent: int, seconds: float) -> None:
        key = (method, route, status)
        row = self.pending.get(key)
        if row is None:
            row = self.pending[key] = [0.0] * (_FIXED + len(_BOUNDS))
        row[0] += 1
        row[1] += seconds
        row[2] += received
        row[3] += sent
        row[_FIXED + bisect_left(_BOUNDS, seconds)] += 1

    def flush(self) -> None:
        if not self.pending:
            return
        pending, self.pending = self.pending, {}
        families = self._families()
        for (method, route, status), row in pending.items():
            if method not in METHODS:
                method = "other"
            families.requests.labels(method, route, str(status)).inc(row[0])
            if row[2]:
                families.request_bytes.labels(method, route).inc(row[2])
            if row[3]:
                families.response_bytes.labels(method, route).inc(row[3])
            child = families.request_seconds.labels(method, route)
            for bucket, count in zip(child._buckets, row[_FIXED:], strict=True):
                if count:
                    bucket.inc(count)
            child._sum.inc(row[1])
