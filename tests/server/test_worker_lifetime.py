"""Worker processes never outlive the server process that forked them.

granian forks the workers; if the server process dies without stopping them
(killed, or a stop signal landing while they start), a worker would go on
serving with no parent, holding the port. Each worker asks the kernel to end
it when its parent ends (Linux ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.requirements import require
from tests.support.servers import cargohold, free_port


def processes_with(marker: str) -> list[int]:
    """PIDs whose command line mentions ``marker`` (a data directory unique to one test)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if marker.encode() in cmdline.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def wait_gone(marker: str, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_workers_end_when_the_server_process_is_killed(tmp_path: Path) -> None:
    require(sys.platform.startswith("linux"), "PR_SET_PDEATHSIG is Linux's")
    with cargohold(tmp_path, "--workers", "2") as server:
        assert server.process is not None
        marker = str(server.data_dir)
        workers = [pid for pid in processes_with(marker) if pid != server.process.pid]
        assert len(workers) == 2
        server.process.send_signal(signal.SIGKILL)  # no chance to stop them: only the kernel can tell
        server.process.wait(10)
        left = wait_gone(marker, 10)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, f"workers outlived the server: {left}"


def test_a_worker_that_does_not_stop_is_killed_after_the_shutdown_timeout(tmp_path: Path) -> None:
    env = {"CARGOHOLD_SHUTDOWN_TIMEOUT_SECONDS": "1"}
    with cargohold(tmp_path, "--workers", "2", env=env) as server:
        assert server.process is not None
        marker = str(server.data_dir)
        workers = [pid for pid in processes_with(marker) if pid != server.process.pid]
        os.kill(workers[0], signal.SIGSTOP)  # cannot act on SIGTERM: as a worker hung in a handler
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(20)
        assert time.monotonic() - started < 10
        left = wait_gone(marker, 10)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left


def test_workers_end_when_the_server_process_is_killed_while_they_start(tmp_path: Path) -> None:
    require(sys.platform.startswith("linux"), "PR_SET_PDEATHSIG is Linux's")
    data_dir = tmp_path / "data"
    marker = str(data_dir)
    command = [sys.executable, "-m", "cargohold.cli.main", "serve", "--listen", f"127.0.0.1:{free_port()}",
               "--data-dir", marker, "--workers", "2"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not [pid for pid in processes_with(marker) if pid != server.pid]:
            assert time.monotonic() < deadline, "no worker started"
            time.sleep(0.005)
        server.send_signal(signal.SIGKILL)  # a worker is starting (or just started): granian may not see it yet
        server.wait(10)
        left = wait_gone(marker, 10)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, f"workers outlived the server: {left}"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
