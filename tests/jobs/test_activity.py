"""A process is quiet when no request is in flight or just begun; a delivery waits for that, up to a deadline."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from cargohold.jobs import Activity, DeliveryLoop
from cargohold.jobs.activity import QUIET_SECONDS
from cargohold.metadata import migrate, open_metadata_store
from cargohold.webhooks import Endpoints, Links, Sender, Source


def test_quiet_only_with_nothing_in_flight_and_nothing_just_begun() -> None:
    activity = Activity()
    assert activity.quiet()
    activity.started()
    assert not activity.quiet()
    activity.ended()
    assert not activity.quiet()  # one just ended: more may follow
    time.sleep(QUIET_SECONDS)
    assert activity.quiet()


def test_a_delivery_waits_for_a_quiet_moment_no_longer_than_its_deadline(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'm.db'}"
    migrate(url)
    store = open_metadata_store(url)
    activity = Activity()
    loop = DeliveryLoop(store, Endpoints([], store), Sender(), Links(), Source(), holder="h", backoff_max=60.0,
                        activity=activity)

    async def waited(deadline_in: float) -> float:
        started = time.monotonic()
        await loop._quiet_moment(time.time() + deadline_in)
        return time.monotonic() - started

    async def scenario() -> tuple[float, float]:
        activity.started()  # a request that never ends
        busy = await waited(0.3)
        activity.ended()
        await asyncio.sleep(QUIET_SECONDS)
        return busy, await waited(5.0)

    busy, quiet = asyncio.run(scenario())
    asyncio.run(store.close())
    assert 0.3 <= busy < 1.0
    assert quiet < 0.05
