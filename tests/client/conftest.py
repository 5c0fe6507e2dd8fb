"""Real registries on free loopback ports, started for the client suite and stopped by PID.

``registry`` is parametrised over every registry implementation we test against:
Distribution 2.8 (Debian's ``docker-registry``) and cargohold's own server.
``auth_registry`` is Distribution with htpasswd basic auth; ``tls_registry`` is cargohold over
HTTPS with a certificate from a CA made by the test.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cargohold.client import RegistryClient, StaticKeychain, TransportOptions
from cargohold.client.cache import BlobCache
from cargohold.client.keychain import Credentials
from tests.support.requirements import require_tool

from .tlsfiles import TLSFiles, make_tls_files

ROOT = Path(__file__).resolve().parents[2]
USERNAME = "tester"
PASSWORD = "s3cret-pass"


@dataclass
class RunningRegistry:
    """A registry process on 127.0.0.1:port."""

    kind: str
    host: str
    process: subprocess.Popen[bytes]
    log: Path
    username: str | None = None
    password: str | None = None

    def repo(self, prefix: str = "test") -> str:
        """A fresh repository name, so tests never see each other's content."""
        return f"{prefix}/r{uuid.uuid4().hex[:10]}"

    def ref(self, name: str, tag: str = "v1") -> str:
        return f"{self.host}/{name}:{tag}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(host: str, process: subprocess.Popen[bytes], log: Path, ca: Path | None = None) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"registry exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if ca is None:
                httpx.get(f"http://{host}/v2/", timeout=1)
            else:
                httpx.get(f"https://{host}/v2/", timeout=1, verify=ssl.create_default_context(cafile=str(ca)))
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"registry on {host} did not start:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


def start_distribution(base: Path, *, htpasswd: bool = False) -> RunningRegistry:
    require_tool("docker-registry")
    port = free_port()
    base.mkdir(parents=True, exist_ok=True)
    auth = ""
    if htpasswd:
        import bcrypt

        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
        (base / "htpasswd").write_text(f"{USERNAME}:{hashed}\n")
        auth = f"auth:\n  htpasswd:\n    realm: cargohold-test\n    path: {base / 'htpasswd'}\n"
    config = base / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        "storage:\n"
        f"  filesystem: {{rootdirectory: {base / 'data'}}}\n"
        "  delete: {enabled: true}\n"
        "  cache: {blobdescriptor: inmemory}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: cargohold-test-secret\n"
        "compatibility:\n  schema1:\n    enabled: true\n" + auth
    )
    log = base / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=out, stderr=out)
    host = f"127.0.0.1:{port}"
    wait_ready(host, process, log)
    return RunningRegistry(
        "distribution", host, process, log, USERNAME if htpasswd else None, PASSWORD if htpasswd else None
    )


def start_cargohold(base: Path, tls: TLSFiles | None = None) -> RunningRegistry:
    """cargohold's server; over HTTPS with ``tls`` (its certificate is valid for 127.0.0.1)."""
    port = free_port()
    base.mkdir(parents=True, exist_ok=True)
    log = base / "server.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    argv = [
        sys.executable,
        "-m",
        "cargohold.cli.main",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--data-dir",
        str(base / "data"),
    ]
    if tls is not None:
        argv += ["--tls-cert", str(tls.server_cert), "--tls-key", str(tls.server_key)]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=out, env=env)
    host = f"127.0.0.1:{port}"
    wait_ready(host, process, log, tls.ca_cert if tls else None)
    return RunningRegistry("cargohold", host, process, log)


STARTERS = {"distribution": start_distribution, "cargohold": start_cargohold}


@pytest.fixture(scope="session", params=sorted(STARTERS))
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """Each registry implementation in turn, plain HTTP, no auth."""
    running = STARTERS[request.param](tmp_path_factory.mktemp(request.param))
    yield running
    stop(running.process)


@pytest.fixture(scope="session")
def distribution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """A second, always-Distribution registry: the other end of cross-registry copies."""
    running = start_distribution(tmp_path_factory.mktemp("distribution-peer"))
    yield running
    stop(running.process)


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """Distribution with htpasswd basic auth."""
    running = start_distribution(tmp_path_factory.mktemp("distribution-auth"), htpasswd=True)
    yield running
    stop(running.process)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A private CA, a server certificate for 127.0.0.1 and a client certificate, all from it."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory, tls_files: TLSFiles) -> Iterator[RunningRegistry]:
    """cargohold serving HTTPS with a certificate from the test CA."""
    running = start_cargohold(tmp_path_factory.mktemp("cargohold-tls"), tls_files)
    yield running
    stop(running.process)


@pytest.fixture
def cache(tmp_path: Path) -> BlobCache:
    return BlobCache(tmp_path / "cache")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[RegistryClient]:
    """An anonymous client (no docker config is read) with fast retries."""
    with RegistryClient(
        keychain=StaticKeychain(Credentials(), registries=[]),
        options=TransportOptions(retries=1, backoff=0.01),
    ) as c:
        yield c
