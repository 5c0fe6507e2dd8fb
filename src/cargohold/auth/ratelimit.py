"""Failed logins, counted per account name and per client address, over a sliding window.

Once either count reaches its limit, further attempts for that name or from
that address are refused with 429 TOOMANYREQUESTS until the oldest failure
leaves the window, right password or not (otherwise the limit would not slow
guessing). Successes do not clear the count, so one known password cannot
be used to reset the budget for guessing another.

Failures are rows in the metadata database (``failed_logins``), so every worker
process sees the same counts. Only failures touch it; a login that is not
being limited costs one indexed read per key.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from ..errcodes import TooManyRequests
from ..metadata.sqlite_db import SqliteDatabase


class LoginLimiter:
    def __init__(
        self, db: SqliteDatabase, per_account: int, per_address: int, window_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self.per_account = per_account
        self.per_address = per_address
        self.window = window_seconds
        self._clock = clock

    def _keys(self, account: str | None, address: str) -> list[tuple[str, int]]:
        keys = [(f"address:{address}", self.per_address)]
        if account:
            keys.append((f"account:{account}", self.per_account))
        return [(key, limit) for key, limit in keys if limit > 0]

    def check(self, account: str | None, address: str) -> None:
        """Raise :class:`TooManyRequests` (with ``Retry-After``) if this login may not be tried now."""
        now = self._clock()
        for key, limit in self._keys(account, address):
            rows = self._db.execute(
                "SELECT at FROM failed_logins WHERE key = ? AND at > ? ORDER BY at DESC LIMIT ?",
                (key, now - self.window, limit),
            ).fetchall()
            if len(rows) >= limit:
                oldest_counted = float(rows[-1][0])
                retry = max(1, math.ceil(oldest_counted + self.window - now))
                raise TooManyRequests(
                    "too many failed logins; try again later", headers={"Retry-After": str(retry)}
                )

    def failed(self, account: str | None, address: str) -> None:
        now = self._clock()
        with self._db.transaction() as db:
            db.execute("DELETE FROM failed_logins WHERE at <= ?", (now - self.window,))
            db.executemany(
                "INSERT INTO failed_logins (key, at) VALUES (?, ?)",
                [(key, now) for key, _ in self._keys(account, address)],
            )
