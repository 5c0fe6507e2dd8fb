"""The requests a test registry served, read from its access log: what a client did, seen from the server.

Distribution writes combined-format lines (the request line with its query string); cargohold writes one
JSON object per request (its path without the query). Both flush on their own schedule, so a window of
requests is bounded by two marker requests (a 404 on a unique name) that are waited for in the log.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import unquote

import httpx

from .conftest import RunningRegistry

_COMBINED = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3}) ')
T = TypeVar("T")


@dataclass(frozen=True)
class Served:
    method: str
    path: str  # with the query string where the server logs it (Distribution), else without
    status: int

    @property
    def blob_digest(self) -> str | None:
        """The digest of a ``/blobs/DIGEST`` request (not an upload)."""
        match = re.search(r"/blobs/(sha256:[0-9a-f]{64})", self.path)
        return match.group(1) if match else None

    @property
    def is_upload(self) -> bool:
        return "/blobs/uploads" in self.path


def _read(registry: RunningRegistry) -> list[Served]:
    found = []
    for line in registry.log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict) and "method" in item and "status" in item:
                found.append(Served(item["method"], item["path"], int(item["status"])))
            continue
        match = _COMBINED.search(line)
        if match:
            found.append(Served(match["method"], unquote(match["path"]), int(match["status"])))
    return found


def _mark(registry: RunningRegistry) -> str:
    name = f"marker/m{uuid.uuid4().hex[:12]}"
    httpx.get(f"http://{registry.host}/v2/{name}/tags/list", timeout=5)
    return name


def _until_logged(registry: RunningRegistry, name: str) -> list[Served]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        served = _read(registry)
        for i, item in enumerate(served):
            if name in item.path:
                return served[: i + 1]
        time.sleep(0.05)
    raise AssertionError(f"{registry.kind} never logged the marker request {name}")


@contextmanager
def served_during(registry: RunningRegistry) -> Iterator[list[Served]]:
    """The requests ``registry`` served inside the ``with`` block (filled in when it ends)."""
    before = len(_until_logged(registry, _mark(registry)))
    window: list[Served] = []
    yield window
    after = _until_logged(registry, _mark(registry))
    window.extend(after[before:-1])


def watched(registry: RunningRegistry, action: Callable[[], T]) -> tuple[T, list[Served]]:
    with served_during(registry) as window:
        result = action()
    return result, window


def assert_no_layer_moved(served: list[Served], layers: set[str], uploaded: set[str], mounted: int) -> None:
    """No request read a layer's bytes, and the only blobs written were ``uploaded`` (configs), besides the
    ``mounted`` cross-repository mounts the command reported.

    An upload completes with a 201 to a PUT, or to a POST ``?digest=`` (one request, for blobs up to 256 KiB:
    the tests' layers are larger); a mount is a POST answered 201 too. cargohold's log has no query string,
    so completed uploads are counted as those 201s less the mounts; Distribution's shows each upload's digest.
    """
    assert layers, "the test has layers to watch"
    read = [s for s in served if s.method == "GET" and s.blob_digest in layers]
    assert not read, f"layers were downloaded: {read}"
    patched = [s for s in served if s.method == "PATCH"]
    assert not patched, f"blob bytes were sent in chunks: {patched}"
    puts = [s for s in served if s.is_upload and s.method == "PUT" and s.status in (201, 204)]
    posts = [s for s in served if s.is_upload and s.method == "POST" and s.status == 201]
    assert len(puts) + len(posts) - mounted == len(uploaded), (
        f"expected {len(uploaded)} upload(s) and {mounted} mount(s); the registry served {puts + posts}"
    )
    for item in puts + posts:
        if "?" in item.path:  # Distribution: every upload names its digest, every mount its source
            assert "mount=" in item.path or any(f"digest={d}" in item.path for d in uploaded), item
    shown = [s for s in posts if "mount=" in s.path]
    if any("?" in s.path for s in served if s.is_upload):
        assert len(shown) == mounted, f"{mounted} mounts reported, the registry shows {shown}"
