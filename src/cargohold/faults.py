"""Crash points: a test makes the server kill itself at one named step of an upload or a
commit (in the service, or in a blob store).

``CARGOHOLD_CRASH_AT`` names the step. It is read once, at import; unset (always,
outside crash tests) :func:`crash_point` only compares two strings and returns.
"""

from __future__ import annotations

import os
import signal
from typing import Final

_CRASH_AT: Final = os.environ.get("CARGOHOLD_CRASH_AT") or None


def crash_point(step: str) -> None:
    """SIGKILL this process if ``step`` is the configured one: nothing is flushed or cleaned up."""
    if step == _CRASH_AT:
        os.kill(os.getpid(), signal.SIGKILL)
