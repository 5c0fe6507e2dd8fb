"""What the scrub records (migration ``0019_scrub.sql``): its runs and the blobs whose bytes it found wrong.

The scrub re-hashes a sample of stored blobs at each run (:mod:`cargohold.service.scrub`); these are the
rows it leaves for an administrator (``cargohold scrub``, ``GET /admin/v1/scrub``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

#: a blob's bytes hash to another digest, or have another size than its row says
CORRUPT: Final = "corrupt"
#: the store holds no bytes for a blob row
MISSING: Final = "missing"


@dataclass(frozen=True, slots=True)
class ScrubFinding:
    digest: str
    #: :data:`CORRUPT` or :data:`MISSING`
    problem: str
    #: the size the blob's row records
    expected_size: int
    #: what the stored bytes were (None: missing)
    found_size: int | None
    found_digest: str | None
    first_found_at: float
    last_found_at: float

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "problem": self.problem, "expected_size": self.expected_size,
                "found_size": self.found_size, "found_digest": self.found_digest,
                "first_found_at": self.first_found_at, "last_found_at": self.last_found_at}


@dataclass(frozen=True, slots=True)
class ScrubRun:
    started_at: float
    finished_at: float
    #: "job" (the periodic scrub) or "command" (``cargohold scrub``)
    started_by: str
    checked: int
    bytes_checked: int
    problems: int
    #: files or objects that no row named, removed by the store's sweep (None: the run did not sweep)
    orphans_removed: int | None
    #: the last digest checked: the next run starts after it
    last_digest: str | None
    error: str | None = None
    id: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "started_at": self.started_at, "finished_at": self.finished_at,
                "started_by": self.started_by, "checked": self.checked, "bytes_checked": self.bytes_checked,
                "problems": self.problems, "orphans_removed": self.orphans_removed,
                "last_digest": self.last_digest, "error": self.error}


class ScrubRecords(Protocol):
    """The scrub's rows in the metadata database (:mod:`cargohold.metadata.sql_scrub`)."""

    async def scrub_sample(self, after: str | None, limit: int) -> list[tuple[str, int]]:
        """Up to ``limit`` blob rows (digest, size) in digest order after ``after``, wrapping around to the
        first when the end is reached."""
        ...

    async def scrub_last_digest(self) -> str | None:
        """Where the last run stopped (None: no run yet)."""
        ...

    async def record_scrub_finding(self, finding: ScrubFinding) -> None:
        """Record (or renew) a blob's finding; nothing when its row is gone meanwhile."""
        ...

    async def clear_scrub_findings(self, digests: Sequence[str]) -> None:
        """Forget the findings of blobs that checked clean."""
        ...

    async def add_scrub_run(self, run: ScrubRun) -> ScrubRun: ...

    async def scrub_findings(self) -> list[ScrubFinding]:
        """Every open finding, first found first."""
        ...

    async def scrub_runs(self, limit: int) -> list[ScrubRun]:
        """The last ``limit`` runs, newest first."""
        ...
