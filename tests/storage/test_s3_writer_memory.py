"""An S3 upload holds the parts in flight and the one it is filling, not a copy of each besides (a
replica's memory while a big blob is pushed through it)."""

from __future__ import annotations

import asyncio
import os
import tracemalloc
from pathlib import Path

import pytest

from cargohold.storage.s3 import PARTS_IN_FLIGHT, S3BlobStore
from tests.storage.test_blob_stores import open_store

PART = 5 * 1024 * 1024
WRITE = 1024 * 1024


async def _push(store: S3BlobStore, upload_id: str, chunk: bytes, parts: int) -> None:
    await store.upload_start(upload_id)
    writer = await store.upload_writer(upload_id, 0)
    for _ in range(parts * PART // WRITE):
        await asyncio.to_thread(writer.write, chunk)
    await asyncio.to_thread(writer.close)
    await store.upload_delete(upload_id)


def test_an_upload_holds_the_parts_in_flight_and_one_more(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    store = open_store("s3", tmp_path / "store", request)
    assert isinstance(store, S3BlobStore) and store.part_size == PART
    chunk = os.urandom(WRITE)

    async def scenario() -> int:
        await _push(store, "warm-up", chunk, 2)  # the client loads its models on first use
        tracemalloc.start()
        try:
            await _push(store, "measured", chunk, 8)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak = asyncio.run(scenario())
    # the parts in flight, the buffer filling the next one, and slack for the buffer's growth (a copy
    # per part besides, as before, held up to 5.2 parts here)
    assert peak < (PARTS_IN_FLIGHT + 2) * PART, f"peak {peak / PART:.1f} parts"
