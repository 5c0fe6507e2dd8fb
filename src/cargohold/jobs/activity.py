"""How busy this process is serving requests: background work that can wait (webhook delivery) waits for a
quiet moment, so that it does not take the CPU and the event loop from the requests."""

from __future__ import annotations

import math
import time
from typing import Final

#: quiet: no request in flight, and none started for this long
QUIET_SECONDS: Final = 0.2


class Activity:
    """Counted by the app around every request (an increment and a clock read each way)."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.last_started = -math.inf

    def started(self) -> None:
        self.in_flight += 1
        self.last_started = time.monotonic()

    def ended(self) -> None:
        self.in_flight -= 1

    def quiet(self) -> bool:
        return self.in_flight == 0 and time.monotonic() - self.last_started >= QUIET_SECONDS
