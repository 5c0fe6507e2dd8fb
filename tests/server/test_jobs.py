"""Periodic jobs run in one process of the deployment at a time, whatever the number of workers or replicas."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from tests.support.servers import CargoholdServer, cargohold, free_port

#: the purge runs every second (the upload max age); its lease lasts two
FAST_PURGE = {"CARGOHOLD_UPLOAD_MAX_AGE_SECONDS": "1"}


def purge_holders(*servers: CargoholdServer) -> list[str]:
    """The holder named by each purge run the servers logged so far (at debug level)."""
    holders = []
    for server in servers:
        for line in server.log().splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("message") == "job ran" and entry.get("job") == "purge-uploads":
                    holders.append(entry["holder"])
    return holders


def test_one_worker_of_the_deployment_runs_the_purge(tmp_path: Path) -> None:
    with cargohold(tmp_path, "--workers", "2", "--log-level", "debug", env=FAST_PURGE) as server:
        time.sleep(4.5)
        runs = purge_holders(server)
    assert len(set(runs)) == 1, f"more than one process ran the purge: {set(runs)}"
    assert 3 <= len(runs) <= 6, f"not once a second from one process: {runs}"


def test_another_process_takes_the_purge_over_when_its_holder_is_killed(tmp_path: Path) -> None:
    """Two replicas on one database (four workers): one runs the purge; kill it and another takes over."""
    data = tmp_path / "data"
    first = CargoholdServer(data, free_port(), ["--workers", "2", "--log-level", "debug"], FAST_PURGE).start()
    second = CargoholdServer(data, free_port(), ["--workers", "2", "--log-level", "debug"], FAST_PURGE).start()
    try:
        time.sleep(3.5)
        runs = purge_holders(first, second)
        assert len(set(runs)) == 1 and len(runs) >= 2, runs
        holder = runs[0]
        os.kill(int(holder.split(":")[1]), signal.SIGKILL)
        killed_at = time.monotonic()
        before = len(runs)
        while not (after := purge_holders(first, second)[before:]):
            assert time.monotonic() - killed_at < 10, "no process took the purge over"
            time.sleep(0.2)
        # not before the killed holder's lease (two seconds) lapsed
        assert time.monotonic() - killed_at > 0.5
        assert holder not in after, after
        time.sleep(2.5)
        assert len(set(purge_holders(first, second)[before:])) == 1
    finally:
        first.stop()
        second.stop()
