"""Serving with webhook endpoints, and recording events into a server's database as the service does."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from cargohold.config import WebhookEndpoint, convert
from cargohold.events.model import Action, Event
from cargohold.events.recorder import Recorder
from cargohold.metadata.sqlite import SqliteMetadataStore
from cargohold.webhooks import Endpoints
from tests.support.servers import CargoholdServer, free_port


def write_config(tmp: Path, endpoints: Sequence[dict[str, Any]], sections: dict[str, Any] | None = None,
                 **notifications: Any) -> Path:
    path = tmp / "cargohold.yml"
    path.write_text(yaml.safe_dump({"notifications": {"endpoints": list(endpoints), **notifications},
                                    **(sections or {})}))
    return path


@contextlib.contextmanager
def serving(tmp: Path, endpoints: Sequence[dict[str, Any]], *args: str, data_dir: Path | None = None,
            sections: dict[str, Any] | None = None, **notifications: Any) -> Iterator[CargoholdServer]:
    """A server with these endpoints (and other ``sections`` of its configuration file)."""
    config = write_config(tmp, endpoints, sections, **notifications)
    server = CargoholdServer(data_dir or tmp / "data", free_port(), ["--config", str(config), *args]).start()
    try:
        yield server
    finally:
        server.stop()


def push_event(**fields: Any) -> Event:
    """A manifest push of ``team/app:1.0`` by alice, as the service records one; ``fields`` change it."""
    values: dict[str, Any] = {
        "action": Action.MANIFEST_PUSH, "repository": "team/app", "tag": "1.0", "digest": "sha256:" + "ab" * 32,
        "media_type": "application/vnd.oci.image.manifest.v1+json", "size": 1234, "detail": {"tags": ["1.0"]},
        "actor": "alice", "actor_kind": "user", "address": "10.1.2.3", "user_agent": "skopeo/1.13",
        "request_id": "req-1", "host": "registry.example:5000", "method": "PUT",
    }
    values.update(fields)
    return Event(**values)


def record(data_dir: Path, endpoints: Sequence[dict[str, Any]], *events: Event) -> None:
    """Record ``events`` in the server's database, each in a transaction of its own, with the recorder and the
    endpoints' targets, as the service records a change."""

    async def go() -> None:
        store = SqliteMetadataStore(str(data_dir / "metadata.db"))
        recorder = Recorder(Endpoints([convert(e, WebhookEndpoint) for e in endpoints], store))
        try:
            for event in events:
                async with store.transaction() as tx:
                    await recorder.record(tx, event)
        finally:
            await store.close()

    asyncio.run(go())


def kill_hard(server: CargoholdServer) -> None:
    """SIGKILL the server process and its workers at once, as a lost machine stops them (no shutdown)."""
    assert server.process is not None
    pid = server.process.pid
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    server.stop(signal.SIGKILL)
    for child in children:
        while Path(f"/proc/{child}").exists() and "zombie" not in _state(child):
            time.sleep(0.01)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:", 1)[1].split("\n", 1)[0]
    except (OSError, IndexError):
        return "zombie"


def delivery_rows(data_dir: Path) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(data_dir / "metadata.db")) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM event_deliveries ORDER BY id")]


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.05)
