"""The ``metrics`` phase: cargohold with ``/metrics`` on against off, manifest GETs and blob HEADs per second.

Two servers (SQLite + filesystem, the default workers), one with ``metrics.enabled`` and a token, scraped once a
second during its load (Prometheus scrapes every 15 to 60 s: this is the worst of it), one without. Each run
measures both, alternating which goes first, and the servers' CPU time per request (user + system, all their
processes, the scrapes included). Target: metrics cost under 3% of manifest GETs per second.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from . import workloads
from .servers import Server
from .workloads import Sizes

if TYPE_CHECKING:
    from .run import Results

A = "cargohold"
ON, OFF = "metrics on", "metrics off"
TOKEN = "bench-metrics-token"
#: seconds between two scrapes of the server with metrics on, during its load
SCRAPE_SECONDS = 1.0


def _config(work: Path) -> list[str]:
    token = work / "metrics-token"
    token.write_text(TOKEN + "\n")
    config = work / "metrics.json"
    config.write_text(json.dumps({"metrics": {"enabled": True, "token_file": str(token)}}))  # JSON is YAML
    return ["--config", str(config)]


def scrape(server: Server) -> int:
    """One scrape; the size of what it answered."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"/metrics answered {response.status}: {body[:200]!r}")
        return len(body)
    finally:
        conn.close()


@contextmanager
def scraped(server: Server) -> Iterator[None]:
    """Scrape ``server`` every :data:`SCRAPE_SECONDS` while the block runs."""
    stop = threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        while not stop.wait(SCRAPE_SECONDS):
            try:
                scrape(server)
            except (OSError, RuntimeError) as exc:
                failures.append(exc)
                return

    thread = threading.Thread(target=run, name="scraper", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    if failures:
        raise RuntimeError(f"scraping failed: {failures[0]}")


def phase_metrics(work: Path, sizes: Sizes, runs: int, results: Results, say: Callable[[str], None]) -> None:
    """Each run starts a pair of fresh servers: two instances of the same server differ by up to 10% in CPU
    per request for as long as they run (where their workers landed), more than the effect measured."""
    from .run import ordered

    work.mkdir(parents=True, exist_ok=True)
    scrape_bytes = 0
    for run in range(runs):
        say(f"metrics: run {run + 1}/{runs}")
        folder = work / f"run-{run}"
        servers = {ON: Server(A, folder / "on", extra_args=_config(work)), OFF: Server(A, folder / "off")}
        labels = {id(server): label for label, server in servers.items()}
        pair = ordered(run, [servers[ON], servers[OFF]])
        try:
            for server in pair:
                server.start()
            fixtures = {id(s): workloads.setup(s, sizes) for s in pair}
            for server in pair:  # unmeasured: the first load after a start is slower (the start's jobs, caches)
                workloads.manifest_get(server, dataclasses.replace(sizes, duration=1.0))
            for metric, measure in (
                ("manifest_get", lambda s: workloads.manifest_get(s, sizes)),
                ("blob_head", lambda s, fixtures=fixtures: workloads.blob_head(s, sizes, fixtures[id(s)])),
            ):
                for server in pair:
                    cpu = server.cpu_seconds()
                    if server is servers[ON]:
                        with scraped(server):
                            rate = measure(server)
                    else:
                        rate = measure(server)
                    cpu = server.cpu_seconds() - cpu
                    results.add("metrics", metric, labels[id(server)], rate)
                    # the server's CPU per request: what the other load on a shared machine moves least
                    results.add("metrics", f"{metric}_cpu", labels[id(server)], cpu / (rate * sizes.duration) * 1e6)
            scrape_bytes = scrape(servers[ON])
        finally:
            for server in servers.values():
                server.cleanup()
    results.notes["metrics"] = {"scrape_bytes": scrape_bytes, "scrape_seconds": SCRAPE_SECONDS}
