"""Mirror jobs and their runs (migration ``0020_mirrors.sql``; :class:`cargohold.mirror.model.MirrorRecords`)
on any :class:`~.sql.SqlDatabase`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from ..mirror.model import RUNS_KEPT, MirrorExists, MirrorJob, MirrorRun, MirrorUnknown
from .sql import SqlDatabase

_JOB_COLUMNS: Final = ("name, source, destination, tags, interval_seconds, platforms, with_referrers, only_signed,"
                       " prune, username, password_file, docker_config, insecure, created_at, next_run_at, failures")
_RUN_COLUMNS: Final = "job, started_by, started_at, finished_at, copied, skipped, errors, pruned"


def _job(row: Sequence[Any]) -> MirrorJob:
    return MirrorJob(str(row[0]), str(row[1]), str(row[2]), str(row[3]), float(row[4]), tuple(json.loads(row[5])),
                     bool(row[6]), bool(row[7]), bool(row[8]), row[9], row[10], row[11], bool(row[12]),
                     float(row[13]), float(row[14]), int(row[15]))


def _run(row: Sequence[Any]) -> MirrorRun:
    return MirrorRun(str(row[1]), str(row[2]), float(row[3]), None if row[4] is None else float(row[4]),
                     json.loads(row[5]), json.loads(row[6]), json.loads(row[7]), tuple(json.loads(row[8])),
                     id=int(row[0]))


async def add(db: SqlDatabase, job: MirrorJob) -> None:
    inserted = await db.write(
        f"INSERT INTO mirror_jobs ({_JOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
        " ON CONFLICT (name) DO NOTHING",
        (job.name, job.source, job.destination, job.tags, job.interval_seconds, json.dumps(list(job.platforms)),
         job.with_referrers, job.only_signed, job.prune, job.username, job.password_file, job.docker_config,
         job.insecure, job.created_at, job.next_run_at, job.failures),
    )
    if inserted != 1:
        raise MirrorExists(job.name)


async def get(db: SqlDatabase, name: str) -> MirrorJob | None:
    row = await db.fetchone(f"SELECT {_JOB_COLUMNS} FROM mirror_jobs WHERE name = ?", (name,))  # noqa: S608
    return None if row is None else _job(row)


async def every(db: SqlDatabase) -> list[MirrorJob]:
    return [_job(row) for row in await db.fetchall(
        f"SELECT {_JOB_COLUMNS} FROM mirror_jobs ORDER BY name")]  # noqa: S608


async def due(db: SqlDatabase, now: float) -> list[MirrorJob]:
    return [_job(row) for row in await db.fetchall(
        f"SELECT {_JOB_COLUMNS} FROM mirror_jobs WHERE next_run_at <= ? ORDER BY next_run_at, name",  # noqa: S608
        (now,))]


async def remove(db: SqlDatabase, name: str) -> bool:
    async with db.atomic():
        await db.write("DELETE FROM mirror_runs WHERE job = ?", (name,))
        return await db.write("DELETE FROM mirror_jobs WHERE name = ?", (name,)) == 1


async def start_run(db: SqlDatabase, run: MirrorRun) -> MirrorRun:
    async with db.atomic():
        row = await db.fetchone(
            f"INSERT INTO mirror_runs ({_RUN_COLUMNS}) SELECT ?, ?, ?, ?, ?, ?, ?, ?"  # noqa: S608
            f" FROM mirror_jobs WHERE name = ? RETURNING id, {_RUN_COLUMNS}",
            (*run.columns(), run.job),
        )
        if row is None:
            raise MirrorUnknown(run.job)
        await db.write("DELETE FROM mirror_runs WHERE job = ? AND id <= ?", (run.job, int(row[0]) - RUNS_KEPT))
    return _run(row)


async def finish_run(db: SqlDatabase, run: MirrorRun, next_run_at: float, failures: int) -> None:
    async with db.atomic():
        await db.write(
            "UPDATE mirror_runs SET finished_at = ?, copied = ?, skipped = ?, errors = ?, pruned = ? WHERE id = ?",
            (*run.columns()[3:], run.id),
        )
        await db.write("UPDATE mirror_jobs SET next_run_at = ?, failures = ? WHERE name = ?",
                       (next_run_at, failures, run.job))


async def runs(db: SqlDatabase, name: str, limit: int) -> list[MirrorRun]:
    rows = await db.fetchall(
        f"SELECT id, {_RUN_COLUMNS} FROM mirror_runs WHERE job = ? ORDER BY id DESC LIMIT ?",  # noqa: S608
        (name, limit))
    return [_run(row) for row in rows]
