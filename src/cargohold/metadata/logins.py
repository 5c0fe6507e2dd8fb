"""The failed-login counters' contract: timestamped failures under string keys, shared by every worker.

What a key means (an address, an account, a pair) is the limiter's business
(:mod:`cargohold.auth.ratelimit`); a store only keeps the times.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class LoginFailureStore(Protocol):
    async def recent(self, key: str, since: float, limit: int) -> list[float]:
        """Times of the latest ``limit`` failures under ``key`` later than ``since``, newest first."""
        ...

    async def record(self, keys: Sequence[str], at: float, forget_until: float) -> None:
        """One failure at ``at`` under each of ``keys``, in one step that also forgets every
        failure (of any key) at or before ``forget_until``."""
        ...

    async def close(self) -> None: ...
