"""A throwaway OpenStack Swift with its S3 API (Debian's ``swift`` packages, run on the system
Python): an all-in-one node (memcached, account, container, object and proxy servers, one device
on a plain folder, one replica) on free loopback ports, tempauth credentials; one per test session,
stopped by its process groups at the end.

Like :mod:`tests.support.seaweedfs`, every test shares one bucket under a key prefix of its own.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import httpx

from tests.support.requirements import require
from tests.support.s3api import BUCKET, S3Api
from tests.support.servers import free_port

#: tempauth's ``user_test_tester = testing .admin``
ACCESS_KEY = "test:tester"
SECRET_KEY = "testing"
SERVERS = ("account", "container", "object", "proxy")

_PIPELINE = ("catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl s3api tempauth"
             " copy slo dlo versioned_writes symlink proxy-logging proxy-server")
_FILTERS = ("catch_errors", "gatekeeper", "healthcheck", "proxy_logging", "listing_formats", "bulk", "tempurl",
            "copy", "slo", "dlo", "versioned_writes", "symlink")


@dataclass
class Swift(S3Api):
    access_key: ClassVar[str] = ACCESS_KEY
    secret_key: ClassVar[str] = SECRET_KEY

    root: Path
    port: int
    #: process group ids (each server and its worker)
    groups: list[int]
    _names: itertools.count[int] = field(default_factory=itertools.count)

    def stop(self) -> None:
        for group in self.groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)  # the data is throwaway
        shutil.rmtree(self.root, ignore_errors=True)


def _config(root: Path, ports: dict[str, int]) -> None:
    etc, devices = root / "etc", root / "srv"
    (devices / "d1").mkdir(parents=True)
    etc.mkdir()
    (etc / "swift.conf").write_text(
        "[swift-hash]\nswift_hash_path_suffix = cargohold\nswift_hash_path_prefix = cargohold\n"
        "[storage-policy:0]\nname = Policy-0\ndefault = yes\n")
    common = (f"[DEFAULT]\nbind_ip = 127.0.0.1\nswift_dir = {etc}\ndevices = {devices}\nmount_check = false\n"
              "disable_fallocate = true\nworkers = 1\nuser = root\nlog_name = swift\n")
    for name in ("account", "container", "object"):
        (etc / f"{name}-server.conf").write_text(
            f"{common}bind_port = {ports[name]}\n[pipeline:main]\npipeline = {name}-server\n"
            f"[app:{name}-server]\nuse = egg:swift#{name}\n")
    filters = "".join(f"[filter:{'proxy-logging' if name == 'proxy_logging' else name}]\nuse = egg:swift#{name}\n"
                      for name in _FILTERS)
    (etc / "proxy-server.conf").write_text(
        f"[DEFAULT]\nbind_ip = 127.0.0.1\nbind_port = {ports['proxy']}\nswift_dir = {etc}\nworkers = 1\n"
        f"user = root\nlog_name = swift-proxy\n[pipeline:main]\npipeline = {_PIPELINE}\n"
        "[app:proxy-server]\nuse = egg:swift#proxy\nallow_account_management = true\naccount_autocreate = true\n"
        "[filter:s3api]\nuse = egg:swift#s3api\nlocation = us-east-1\ndns_compliant_bucket_names = false\n"
        f"[filter:tempauth]\nuse = egg:swift#tempauth\nuser_test_tester = {SECRET_KEY} .admin\n"
        f"[filter:cache]\nuse = egg:swift#memcache\nmemcache_servers = 127.0.0.1:{ports['memcached']}\n{filters}")
    for name in ("account", "container", "object"):
        builder = str(etc / f"{name}.builder")
        subprocess.run(["swift-ring-builder", builder, "create", "6", "1", "1"], check=True, capture_output=True)
        subprocess.run(["swift-ring-builder", builder, "add", f"r1z1-127.0.0.1:{ports[name]}/d1", "1"],
                       check=True, capture_output=True)
        subprocess.run(["swift-ring-builder", builder, "rebalance"], capture_output=True)  # 1 on warnings


def start_swift(root: Path) -> Swift:
    require(shutil.which("swift-proxy-server") is not None and shutil.which("memcached") is not None,
            "OpenStack Swift is not installed: apt-get install swift swift-proxy swift-object swift-container"
            " swift-account python3-swift memcached (scripts/apt-packages.txt)")
    ports = {name: free_port() for name in ("memcached", *SERVERS)}
    root.mkdir(parents=True, exist_ok=True)
    _config(root, ports)
    commands = [["memcached", "-u", "root", "-l", "127.0.0.1", "-p", str(ports["memcached"]), "-U", "0"]]
    commands += [[f"swift-{name}-server", str(root / "etc" / f"{name}-server.conf"), "-v"] for name in SERVERS]
    groups = []
    for command in commands:
        log = open(root / f"{Path(command[0]).name}.log", "wb")  # noqa: SIM115 - the server's for its lifetime
        groups.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True).pid)
    server = Swift(root, ports["proxy"], groups)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{server.endpoint}/healthcheck", timeout=2).status_code == 200:
                with contextlib.suppress(server.client().exceptions.BucketAlreadyOwnedByYou):
                    server.client().create_bucket(Bucket=BUCKET)
                return server
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.2)
    logs = "".join((root / f"swift-{name}-server.log").read_text()[-1000:] for name in SERVERS)
    server.stop()
    raise RuntimeError(f"Swift did not answer within 90 s: {logs}")
