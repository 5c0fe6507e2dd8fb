"""The ``gc`` phase: serving during a garbage collection against serving without one, and a big collection's time.

cargohold on the embedded default (SQLite + filesystem), its gc grace periods 0 and its periodic collection
off (``cargohold gc`` starts every collection here). Unreferenced blobs are small random blobs in a repository
no manifest uses, each a blob row, a link, a review row and a file, as a client's abandoned push leaves them
(written directly: see ``populate``).

- Serving: per run, manifest GET by tag (wrk) and a monolithic blob upload, each once with a collection of
  ``gc_blobs`` blobs running (``cargohold gc`` as a subprocess, started right before the load, the load
  begun once its run is recorded) and once without, alternating which goes first. The collection's own
  start and end (its ``gc_runs`` row) against the load's window give the overlap: the share of the
  measured window a collection was running in.
- Scale: ``gc_scale_blobs`` blobs collected by one ``cargohold gc``: seconds (from its run's record) and blobs/s.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from . import images, workloads
from .servers import Server
from .workloads import Sizes

if TYPE_CHECKING:
    from .run import Results

A = "cargohold"
DURING, WITHOUT = "during a collection", "without"
#: where the unreferenced blobs go (no manifest ever names them)
JUNK = "bench/junk"


def _config(path: Path) -> list[str]:
    path.write_text(json.dumps({"gc": {"enabled": False, "grace_period": 0, "untagged_grace_period": 0}}))
    return ["--config", str(path)]


def populate(server: Server, count: int) -> float:
    """``count`` distinct small unreferenced blobs in ``JUNK``; seconds taken.

    Written as an upload's commit leaves them (``add_blob``: a review row, a blob row, a link; the file at the
    filesystem store's path for its digest), straight into the database and the blob directory: over the API
    (one ``POST ?digest=`` each, 8 connections) this machine makes about 300 a second, too slow for 100,000.
    One blob goes over the API first, which creates the repository.
    """
    from cargohold.digest import Digest
    from cargohold.storage.paths import blob_path

    started = time.perf_counter()
    root = str(server.workdir / "data")
    with server.connection() as conn:
        images.push_blob_bytes(conn, JUNK, os.urandom(64))
    salt, now, rows = os.urandom(16), int(time.time()), []
    for i in range(count):
        data = salt + i.to_bytes(8, "big") + os.urandom(40)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = blob_path(root, Digest.parse(digest))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as file:
            file.write(data)
        rows.append((digest, len(data), now))
    with contextlib.closing(sqlite3.connect(server.workdir / "data" / "metadata.db", timeout=60,
                                            isolation_level=None)) as db:
        db.execute("BEGIN IMMEDIATE")
        (repository_id,) = db.execute("SELECT id FROM repositories WHERE name = ?", (JUNK,)).fetchone()
        db.executemany("INSERT INTO gc_blob_review (digest, queued_at) VALUES (?, ?)", [(d, t) for d, _, t in rows])
        db.executemany("INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, ?)", rows)
        db.executemany("INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES (?, ?, ?)",
                       [(repository_id, d, t) for d, _, t in rows])
        db.execute("COMMIT")
    os.sync()
    return time.perf_counter() - started


class Collection:
    """One ``cargohold gc`` run in a subprocess against ``server``'s data directory."""

    def __init__(self, server: Server, config: list[str]):
        self.database = server.workdir / "data" / "metadata.db"
        cli, env = workloads.cargohold_cli()
        self.after = self._last_run()
        self.process = subprocess.Popen(
            [*cli, "gc", "--json", "--data-dir", str(server.workdir / "data"), *config],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=30) as db:
            return db.execute(sql, args).fetchall()

    def _last_run(self) -> int:
        (found,) = self._query("SELECT COALESCE(MAX(id), 0) FROM gc_runs")[0]
        return int(str(found))

    def wait_started(self, timeout: float = 60) -> None:
        """Until the run is recorded: the collection has begun (the CLI's start-up is not part of it)."""
        deadline = time.monotonic() + timeout
        while not self._query("SELECT 1 FROM gc_runs WHERE id > ?", (self.after,)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"cargohold gc did not start: {self.process.communicate()[1][-2000:]}")
            time.sleep(0.01)

    def finish(self) -> tuple[float, float, int]:
        """(started, finished, blobs deleted) of the run, once it is over."""
        out, err = self.process.communicate(timeout=3600)
        if self.process.returncode != 0:
            raise RuntimeError(f"cargohold gc failed ({self.process.returncode}): {err[-2000:]}")
        report = json.loads(out)
        report = report[0] if isinstance(report, list) else report
        if report["errors"]:
            raise RuntimeError(f"cargohold gc reported errors: {report['errors'][:5]}")
        if report["objects_deleted"] != report["blobs"]:
            raise RuntimeError(f"cargohold gc deleted {report['blobs']} blobs, {report['objects_deleted']} files")
        return float(report["started"]), float(report["finished"]), int(report["blobs"])


def _overlap(window: tuple[float, float], run: tuple[float, float]) -> float:
    """The share of the load's window the collection ran in."""
    start, end = max(window[0], run[0]), min(window[1], run[1])
    return max(0.0, end - start) / (window[1] - window[0])


def _big_file(path: Path, size: int) -> images.Blob:
    if path.exists() and path.stat().st_size == size:
        return images.refresh(path)
    return images.random_file(path, size)


def phase_gc(work: Path, sizes: Sizes, runs: int, results: Results, say: Callable[[str], None]) -> None:
    work.mkdir(parents=True, exist_ok=True)
    config = _config(work / "gc.json")
    server = Server(A, work / "gc", extra_args=config)
    big = work / "big.bin"
    overlaps: dict[str, list[float]] = {}
    durations: list[float] = []
    try:
        server.start()
        workloads.setup(server, Sizes(tags=0, repos=0))
        measures: list[tuple[str, Callable[[], float]]] = [
            ("manifest_get", lambda: workloads.manifest_get(server, sizes)),
            ("upload_monolithic", lambda: workloads.upload_monolithic(server, big, _big_file(big, sizes.big))),
        ]
        for run in range(runs):
            say(f"gc: run {run + 1}/{runs}")
            for key, measure in measures:
                for during in ((True, False) if run % 2 == 0 else (False, True)):
                    if not during:
                        _big_file(big, sizes.big)
                        os.sync()
                        results.add("gc", key, WITHOUT, measure())
                        continue
                    seconds = populate(server, sizes.gc_blobs)
                    results.add("gc", "populate_rate", "machine", sizes.gc_blobs / seconds)
                    _big_file(big, sizes.big)
                    os.sync()
                    collection = Collection(server, config)
                    collection.wait_started()
                    window_start = time.time()
                    value = measure()
                    window = (window_start, time.time())
                    started, finished, blobs = collection.finish()
                    if blobs < sizes.gc_blobs:
                        raise RuntimeError(f"the collection deleted {blobs} blobs, not {sizes.gc_blobs}")
                    results.add("gc", key, DURING, value)
                    overlaps.setdefault(key, []).append(_overlap(window, (started, finished)))
                    durations.append(finished - started)
        say(f"gc: {sizes.gc_scale_blobs} blobs to collect at once")
        seconds = populate(server, sizes.gc_scale_blobs)
        collection = Collection(server, config)
        started, finished, blobs = collection.finish()
        results.add("gc_scale", "seconds", A, finished - started)
        results.add("gc_scale", "blobs_per_s", A, blobs / (finished - started))
        results.notes["gc"] = {"blobs": sizes.gc_blobs, "scale_blobs": blobs, "populate_scale_s": seconds,
                               "duration_s": sizes.duration, "big_bytes": sizes.big, "overlap": overlaps,
                               "collection_s": durations}
    finally:
        server.cleanup()
        big.unlink(missing_ok=True)
