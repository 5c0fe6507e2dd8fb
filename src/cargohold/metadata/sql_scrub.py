"""The scrub's rows (migration ``0019_scrub.sql``; :class:`cargohold.scrub.ScrubRecords`) on any
:class:`~.sql.SqlDatabase`.

The sample walks the ``blobs`` primary key from where the last run stopped: each run reads an index range,
never the whole table, and every blob comes round in turn (one added behind the walk on the next pass).
Findings reference their blob row (``ON DELETE CASCADE``): deleting a blob clears its finding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from ..scrub import ScrubFinding, ScrubRun
from .sql import SqlDatabase

#: runs kept (the newest): the history an administrator reads, and the last one's ``last_digest``
RUNS_KEPT: Final = 1000

_RUN_COLUMNS: Final = ("started_at, finished_at, started_by, checked, bytes_checked, problems, orphans_removed,"
                       " last_digest, error")
_FINDING_COLUMNS: Final = "digest, problem, expected_size, found_size, found_digest, first_found_at, last_found_at"


async def sample(db: SqlDatabase, after: str | None, limit: int) -> list[tuple[str, int]]:
    rows = await db.fetchall("SELECT digest, size FROM blobs WHERE digest > ? ORDER BY digest LIMIT ?",
                             (after or "", limit))
    if len(rows) < limit and after:  # the end: go round to the first
        rows += await db.fetchall("SELECT digest, size FROM blobs WHERE digest <= ? ORDER BY digest LIMIT ?",
                                  (after, limit - len(rows)))
    return [(str(row[0]), int(row[1])) for row in rows]


async def last_digest(db: SqlDatabase) -> str | None:
    row = await db.fetchone("SELECT last_digest FROM scrub_runs ORDER BY id DESC LIMIT 1")
    return None if row is None or row[0] is None else str(row[0])


async def record_finding(db: SqlDatabase, finding: ScrubFinding) -> None:
    # from the blob's row: a blob deleted meanwhile leaves no finding
    await db.write(
        f"INSERT INTO scrub_findings ({_FINDING_COLUMNS})"  # noqa: S608 - constant column names
        " SELECT digest, ?, ?, ?, ?, ?, ? FROM blobs WHERE digest = ?"
        " ON CONFLICT (digest) DO UPDATE SET problem = excluded.problem, expected_size = excluded.expected_size,"
        " found_size = excluded.found_size, found_digest = excluded.found_digest,"
        " last_found_at = excluded.last_found_at",
        (finding.problem, finding.expected_size, finding.found_size, finding.found_digest,
         finding.first_found_at, finding.last_found_at, finding.digest),
    )


async def clear_findings(db: SqlDatabase, digests: Sequence[str]) -> None:
    if digests:
        fragment, args = db.any_of(list(digests))
        await db.write(f"DELETE FROM scrub_findings WHERE digest {fragment}", args)  # noqa: S608


def _run(row: Sequence[Any]) -> ScrubRun:
    return ScrubRun(float(row[1]), float(row[2]), str(row[3]), int(row[4]), int(row[5]), int(row[6]),
                    None if row[7] is None else int(row[7]), row[8], row[9], id=int(row[0]))


async def add_run(db: SqlDatabase, run: ScrubRun) -> ScrubRun:
    async with db.atomic():
        row = await db.fetchone(
            f"INSERT INTO scrub_runs ({_RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
            f" RETURNING id, {_RUN_COLUMNS}",
            (run.started_at, run.finished_at, run.started_by, run.checked, run.bytes_checked, run.problems,
             run.orphans_removed, run.last_digest, run.error),
        )
        assert row is not None
        await db.write("DELETE FROM scrub_runs WHERE id <= ?", (int(row[0]) - RUNS_KEPT,))
    return _run(row)


async def findings(db: SqlDatabase) -> list[ScrubFinding]:
    rows = await db.fetchall(
        f"SELECT {_FINDING_COLUMNS} FROM scrub_findings ORDER BY first_found_at, digest")  # noqa: S608
    return [ScrubFinding(str(r[0]), str(r[1]), int(r[2]), None if r[3] is None else int(r[3]), r[4], float(r[5]),
                         float(r[6])) for r in rows]


async def runs(db: SqlDatabase, limit: int) -> list[ScrubRun]:
    rows = await db.fetchall(
        f"SELECT id, {_RUN_COLUMNS} FROM scrub_runs ORDER BY id DESC LIMIT ?", (limit,))  # noqa: S608
    return [_run(row) for row in rows]


async def named_blobs(db: SqlDatabase, digests: Sequence[str]) -> set[str]:
    """Those of ``digests`` that a commit in flight or a blob row names. The uploads are read first: a
    commit records its digest on its upload row before placing the bytes, and the blob row in the same
    transaction that marks the upload completed, so a digest named by either when the file was seen is
    still named by one of them when they are read in this order."""
    if not digests:
        return set()
    fragment, args = db.any_of(list(digests))
    named = {str(row[0]) for row in await db.fetchall(
        f"SELECT digest FROM uploads WHERE NOT completed AND digest {fragment}", args)}  # noqa: S608
    rest = [digest for digest in digests if digest not in named]
    if rest:
        fragment, args = db.any_of(rest)
        named |= {str(row[0]) for row in await db.fetchall(
            f"SELECT digest FROM blobs WHERE digest {fragment}", args)}  # noqa: S608
    return named
