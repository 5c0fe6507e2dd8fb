"""Failed logins, counted per account name and per client address, over a sliding window.

Once either count reaches its limit, further attempts for that name or from
that address are refused with 429 TOOMANYREQUESTS until the oldest failure
leaves the window, right password or not (otherwise the limit would not slow
guessing). Successes do not clear the count, so one known password cannot
be used to reset the budget for guessing another. Counts live in the worker
process's memory: with N workers the effective limit is up to N times higher.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Final

from ..errcodes import TooManyRequests

#: at most this many names and addresses are tracked; the least recently failed are forgotten first
MAX_TRACKED: Final = 100_000


class LoginLimiter:
    def __init__(
        self, per_account: int, per_address: int, window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_account = per_account
        self.per_address = per_address
        self.window = window_seconds
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def check(self, account: str | None, address: str) -> None:
        """Raise :class:`TooManyRequests` (with ``Retry-After``) if this login may not be tried now."""
        now = self._clock()
        for key, limit in ((f"account:{account}", self.per_account), (f"address:{address}", self.per_address)):
            if key == "account:None" or limit <= 0:
                continue
            failures = self._recent(key, now)
            if failures is not None and len(failures) >= limit:
                retry = max(1, math.ceil(failures[-limit] + self.window - now))
                raise TooManyRequests(
                    "too many failed logins; try again later", headers={"Retry-After": str(retry)}
                )

    def failed(self, account: str | None, address: str) -> None:
        now = self._clock()
        keys = [f"address:{address}"] + ([f"account:{account}"] if account else [])
        for key in keys:
            failures = self._failures.pop(key, None) or deque(maxlen=max(self.per_account, self.per_address, 1))
            failures.append(now)
            self._failures[key] = failures  # most recent last
        while len(self._failures) > MAX_TRACKED:
            self._failures.popitem(last=False)
