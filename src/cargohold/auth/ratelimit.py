"""Failed logins, counted over a sliding window per (account, address), per address and per account.

Three limits, so that guessing is slowed without letting a stranger lock an
account's owner out:

- per account name *and* client address (``login_failures_per_account_address``):
  once reached, that address may not try that name again (429
  TOOMANYREQUESTS with ``Retry-After``) until the oldest failure leaves the
  window, right password or not (otherwise the limit would not slow guessing);
- per client address (``login_failures_per_address``): the same for every name
  tried from that address;
- per account name across all addresses (``login_failures_per_account``): never
  refuses. Each attempt on the name, from anywhere, is answered after a delay
  that doubles with every failure beyond the limit, up to
  ``login_delay_max_seconds``. Refusing here would hand anyone who knows a name
  a way to lock its owner out; a bounded delay slows guessing from many
  addresses (which no per-address limit sees) and only costs the owner a few
  seconds. It applies to every address alike, so fresh addresses do not evade it.

Successes do not clear the counts, so one known password cannot be used to
reset the budget for guessing another.

Failures are kept by a :class:`~cargohold.metadata.logins.LoginFailureStore` in the
metadata database, so every worker process sees the same counts. Only failures
write to it; a login that is not being limited costs one read per key.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..errcodes import TooManyRequests
from ..metadata.logins import LoginFailureStore

#: the first delay once an account is past its limit; each further failure doubles it
FIRST_DELAY_SECONDS = 0.25


@dataclass(frozen=True, slots=True)
class LoginLimits:
    #: failures of one name from one address before that pair is refused
    per_account_address: int = 5
    #: failures from one address (any names) before the address is refused
    per_address: int = 20
    #: failures of one name (all addresses) before its logins are slowed, never refused
    per_account: int = 10
    #: the longest delay the per-account limit adds to a login
    max_delay: float = 4.0
    window: float = 300.0


class LoginLimiter:
    def __init__(
        self, failures: LoginFailureStore, limits: LoginLimits,
        clock: Callable[[], float] = time.time, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._store = failures
        self.limits = limits
        self._clock = clock
        self._sleep = sleep

    @staticmethod
    def _keys(account: str | None, address: str) -> tuple[str, str | None, str | None]:
        """The counters a failure adds to: the address's, the pair's, the account's (no name: address only)."""
        if not account:
            return f"address:{address}", None, None
        return f"address:{address}", f"pair:{address} {account}", f"account:{account}"

    async def _failures(self, key: str, now: float, limit: int) -> list[float]:
        """Times of the latest ``limit`` failures counted under ``key`` within the window, newest first."""
        return await self._store.recent(key, now - self.limits.window, limit)

    async def _refuse_if_spent(self, account: str | None, address: str) -> None:
        now = self._clock()
        by_address, pair, _ = self._keys(account, address)
        for key, limit in ((pair, self.limits.per_account_address), (by_address, self.limits.per_address)):
            if key is None or limit <= 0:
                continue
            failures = await self._failures(key, now, limit)
            if len(failures) >= limit:
                retry = max(1, math.ceil(failures[-1] + self.limits.window - now))
                raise TooManyRequests(
                    f"too many failed logins; try again in {retry} s", headers={"Retry-After": str(retry)}
                )

    async def delay(self, account: str | None) -> float:
        """Seconds the per-account limit holds a login for ``account`` back (0 below the limit)."""
        limit = self.limits.per_account
        if not account or limit <= 0 or self.limits.max_delay <= 0:
            return 0.0
        # doubling from FIRST_DELAY_SECONDS reaches max_delay within this many failures past the limit
        steps = math.ceil(math.log2(max(self.limits.max_delay / FIRST_DELAY_SECONDS, 1))) + 1
        past = len(await self._failures(f"account:{account}", self._clock(), limit + steps)) - limit
        if past < 0:
            return 0.0
        return float(min(self.limits.max_delay, FIRST_DELAY_SECONDS * 2**past))

    async def check(self, account: str | None, address: str) -> None:
        """Raise :class:`TooManyRequests` (with ``Retry-After``) if this login may not be tried now;
        first wait out the account's delay, if it is past its limit."""
        await self._refuse_if_spent(account, address)
        delay = await self.delay(account)
        if delay > 0:
            await self._sleep(delay)
            await self._refuse_if_spent(account, address)  # failures recorded meanwhile count

    async def failed(self, account: str | None, address: str) -> None:
        now = self._clock()
        keys = [key for key in self._keys(account, address) if key is not None]
        await self._store.record(keys, now, now - self.limits.window)
