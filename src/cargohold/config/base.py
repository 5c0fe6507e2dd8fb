"""What every part of the configuration shares: the section type, its error, the defaults of the machine."""

from __future__ import annotations

import os
from typing import Final

import msgspec

#: where the embedded default keeps blobs and metadata when nothing is said
DEFAULT_DATA_DIR: Final = os.path.join(
    os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "cargohold"
)


class ConfigError(ValueError):
    """A configuration value is missing, malformed or contradictory."""


def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


#: one worker process per CPU, up to 8. Measured on 2 CPUs (docs/benchmarks.md): 2 workers
#: served 36% more manifest GETs than 1, blob transfers unchanged; each worker costs ~50 MB.
#: Past 8 is unmeasured, and SQLite writes go one at a time whatever the number.
DEFAULT_WORKERS: Final = max(1, min(_usable_cpus(), 8))


class Section(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A part of the configuration; ``__post_init__`` raises :class:`ConfigError` for a bad combination."""
