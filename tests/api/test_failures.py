"""Unexpected exceptions: the spec's 500 UNKNOWN with a request id, one JSON log line with the traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cargohold.api.server import CONFIG_ENV
from cargohold.config import load_config
from cargohold.metadata import migrate
from tests.support import faulty_app
from tests.support.servers import SRC, free_port, stop_process, wait_for_http

from .helpers import codes

ROOT = SRC.parent


class FaultyServer:
    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log_path = log

    def log_lines(self) -> list[str]:
        time.sleep(0.2)  # the access log is written at the end of the loop iteration
        return self.log_path.read_text().splitlines()

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_lines() if line.startswith("{")]


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultyServer]:
    tmp = tmp_path_factory.mktemp("faulty")
    port = free_port()
    config = load_config(None, {"listen": f"127.0.0.1:{port}", "data_dir": str(tmp / "data")}, {})
    (tmp / "data").mkdir()
    migrate(config.metadata_url)  # as serve does before it starts the workers
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{ROOT}", CONFIG_ENV: config.to_json()}
    log = tmp / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1", "--no-ws", "tests.support.faulty_app:app"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v2/", process)
        yield FaultyServer(f"http://127.0.0.1:{port}", log)
    finally:
        stop_process(process)


def failure_entry(server: FaultyServer, request_id: str) -> dict[str, Any]:
    """The one error line of the request; no line of the log is a bare traceback."""
    lines = server.log_lines()
    assert not any(line.startswith(("Traceback", "  File ")) for line in lines), "\n".join(lines)
    found = [e for e in server.entries() if e.get("request_id") == request_id and "traceback" in e]
    assert len(found) == 1, lines
    return found[0]


@pytest.mark.parametrize("path", ["/v2/_catalog", "/planted/anything"])
def test_unexpected_exception_is_500_unknown_with_request_id(faulty: FaultyServer, path: str) -> None:
    r = httpx.get(f"{faulty.url}{path}")
    assert r.status_code == 500 and codes(r) == ["UNKNOWN"], r.text
    assert r.headers["content-type"] == "application/json"
    request_id = r.headers["x-request-id"]
    assert r.json()["errors"][0] == {
        "code": "UNKNOWN", "message": "internal server error", "detail": {"requestId": request_id},
    }
    assert faulty_app.SECRET not in r.text and "Error" not in r.text
    entry = failure_entry(faulty, request_id)
    assert entry["level"] == "error" and entry["method"] == "GET" and entry["path"] == path
    assert faulty_app.SECRET in entry["traceback"]
    assert entry["traceback"].splitlines()[-1].startswith(("RuntimeError", "KeyError"))
    access = [e for e in faulty.entries() if e.get("request_id") == request_id and "status" in e]
    assert [e["status"] for e in access] == [500]


def test_failure_while_sending_a_body_is_one_log_line(faulty: FaultyServer) -> None:
    with httpx.Client() as client, client.stream("GET", f"{faulty.url}/v2/some/repo/tags/list") as r:
        request_id = r.headers["x-request-id"]
        with pytest.raises(httpx.HTTPError):
            r.read()
    entry = failure_entry(faulty, request_id)
    assert entry["message"] == "sending the response failed" and faulty_app.SECRET in entry["traceback"]


def test_every_response_names_its_request(faulty: FaultyServer) -> None:
    first, second = httpx.get(f"{faulty.url}/v2/"), httpx.get(f"{faulty.url}/v2/nope/manifests/v1")
    assert first.status_code == 200 and second.status_code == 404
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert ids[0] != ids[1] and all(len(i) == 16 for i in ids)
    logged = {e["request_id"]: e["status"] for e in faulty.entries() if "status" in e}
    assert logged[ids[0]] == 200 and logged[ids[1]] == 404
