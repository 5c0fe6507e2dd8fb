"""A collection on SQLite leaves the one write lock to the requests that need it: a writer that waits for it
(with the server's busy timeout) gets it within a fraction of a second while thousands of blobs are collected,
instead of after the whole collection."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import statistics
import threading
import time
from pathlib import Path

from cargohold.metadata import migrate, open_metadata_store
from cargohold.metadata.sqlite_db import BUSY_TIMEOUT_MS
from cargohold.service.gc import Collector, GcOptions
from cargohold.storage.filesystem import FilesystemBlobStore

BLOBS = 2000


def test_a_collection_leaves_the_write_lock_to_other_writers(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    migrate(f"sqlite://{path}")
    meta = open_metadata_store(f"sqlite://{path}")
    collector = Collector(meta, FilesystemBlobStore(str(tmp_path / "blobs")), GcOptions(grace_period=0))
    waits: list[float] = []
    stop = threading.Event()

    def writer() -> None:
        db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        while not stop.is_set():
            started = time.monotonic()
            db.execute("BEGIN IMMEDIATE")
            waits.append(time.monotonic() - started)
            db.execute("COMMIT")
            time.sleep(0.02)
        db.close()

    async def scenario() -> None:
        repository = await meta.ensure_repository("junk")
        for i in range(BLOBS):  # an upload's commit leaves these rows (no file: its deletion finds none)
            await meta.add_blob(repository, "sha256:" + hashlib.sha256(b"%d" % i).hexdigest(), 10)
        thread = threading.Thread(target=writer)
        thread.start()
        try:
            report = await collector.run()
        finally:
            stop.set()
            thread.join()
        assert len(report.blobs) == BLOBS and not report.errors
        await meta.close()

    asyncio.run(scenario())
    # without rests between its transactions a writer waited 0.08-0.14 s (median), with 2,000 blobs or 5,000
    assert statistics.median(waits) < 0.05, f"a writer waited {statistics.median(waits):.2f} s (median) for the lock"
    assert max(waits) < 0.5, f"a writer waited {max(waits):.2f} s for the lock"
    assert len(waits) >= 10, "the writer had the lock again and again during the collection"
