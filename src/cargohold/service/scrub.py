"""The scrub: re-hash a sample of stored blobs and record those whose bytes do not match their row.

Each run reads the next ``sample_size`` blob rows in digest order, after where the last run stopped
(round and round: every blob is checked in turn), streams each blob's bytes from the store and hashes
them. A blob whose bytes hash to another digest or have another size than its row says is *corrupt*;
one whose bytes the store does not hold is *missing*. Each is logged at error level and recorded
(:mod:`cargohold.scrub`) until a later check finds it clean or the blob is deleted.

A corrupt blob is reported, never repaired, moved or deleted (as Distribution and Zot do): its bytes
may be all there is to recover from, and a client pulling it already refuses them by their digest. An
administrator restores the bytes from a backup, or deletes the blob and pushes it again. Readiness does
not depend on findings: the registry serves everything else as before.

A run on demand (``cargohold scrub``) first runs the store's sweep of what a crash left
(:class:`~cargohold.storage.driver.Sweeper`), which the periodic jobs otherwise run on their own.
A store failure ends the run (a failure to read is not a finding): the run is recorded with the error
and the next one starts where it stopped.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ..digest import Digest
from ..errcodes import TooManyRequests, Unavailable
from ..metadata.store import MetadataError
from ..scrub import CORRUPT, MISSING, ScrubFinding, ScrubRecords, ScrubRun
from ..storage.driver import BlobMissing, BlobStore, StorageError, Sweeper

log: Final = logging.getLogger("cargohold.scrub")

#: what ends a run: the database or the store failing (not the bytes being wrong)
SCRUB_ERRORS: Final = (StorageError, MetadataError, TooManyRequests, Unavailable, OSError)


class ScrubFailed(Exception):
    """A run ended on a backend failure; it was recorded with the error (``run``)."""

    def __init__(self, run: ScrubRun):
        super().__init__(run.error)
        self.run = run


@dataclass(frozen=True, slots=True)
class ScrubReport:
    run: ScrubRun
    #: what this run found wrong
    found: list[ScrubFinding]


class Scrubber:
    def __init__(self, blobs: BlobStore, records: ScrubRecords, clock: Callable[[], float] = time.time):
        self.blobs = blobs
        self.records = records
        self.clock = clock

    async def run(self, sample_size: int, *, started_by: str, sweep: bool = False) -> ScrubReport:
        """One run (module docstring); raises ScrubFailed after recording a run a backend failure ended."""
        started = self.clock()
        orphans: int | None = None
        found: list[ScrubFinding] = []
        clean: list[str] = []
        checked = read_total = 0
        last = error = None
        try:
            if sweep and isinstance(self.blobs, Sweeper):
                orphans = await self.blobs.sweep()
            last = await self.records.scrub_last_digest()
            for digest, size in await self.records.scrub_sample(last, sample_size):
                finding, read = await self._check(digest, size)
                checked += 1
                read_total += read
                last = digest
                if finding is None:
                    clean.append(digest)
                else:
                    found.append(finding)
                    await self.records.record_scrub_finding(finding)
            await self.records.clear_scrub_findings(clean)
        except SCRUB_ERRORS as exc:
            error = f"{type(exc).__name__}: {exc}"
        run = await self.records.add_scrub_run(ScrubRun(
            started, self.clock(), started_by, checked, read_total, len(found), orphans, last, error))
        if error is not None:
            raise ScrubFailed(run)
        return ScrubReport(run, found)

    async def _check(self, digest: str, size: int) -> tuple[ScrubFinding | None, int]:
        """The finding on one blob (None: its bytes match), and how many bytes were read."""
        parsed = Digest.parse(digest)
        hasher = hashlib.new(parsed.algorithm)
        read = 0
        try:
            async for chunk in self.blobs.read(parsed):
                await asyncio.to_thread(hasher.update, chunk)
                read += len(chunk)
        except BlobMissing:
            return self._found(digest, MISSING, size, None, None), read
        actual = f"{parsed.algorithm}:{hasher.hexdigest()}"
        if actual == digest and read == size:
            return None, read
        return self._found(digest, CORRUPT, size, read, actual), read

    def _found(self, digest: str, problem: str, size: int, found_size: int | None,
               found_digest: str | None) -> ScrubFinding:
        now = self.clock()
        if problem == CORRUPT:
            log.error("stored blob %s does not match its digest: %d bytes hashing to %s, expected %d bytes",
                      digest, found_size, found_digest, size, extra={
                          "digest": digest, "problem": problem, "expected_size": size, "found_size": found_size,
                          "found_digest": found_digest})
        else:
            log.error("stored blob %s is missing from the blob store", digest,
                      extra={"digest": digest, "problem": problem, "expected_size": size})
        return ScrubFinding(digest, problem, size, found_size, found_digest, now, now)
