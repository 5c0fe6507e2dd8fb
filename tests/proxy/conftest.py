"""Upstream registries for the pull-through cache's tests, on free loopback ports, stopped by PID.

* ``distribution_upstream``: Distribution 2.8 (Debian's ``docker-registry``) with htpasswd auth,
  filesystem storage (a blob's bytes can be corrupted in place: :meth:`UpstreamServer.blob_file`);
* ``cargohold_upstream``: a second cargohold with token auth;
* ``start_distribution_upstream``: a Distribution of the test's own, for tests that stop it.

Each :class:`UpstreamServer` pushes small images (:meth:`UpstreamServer.push_image`), counts the
GETs it answered from its access log (:meth:`UpstreamServer.gets`), and gives the
:class:`UpstreamSettings` a proxy reaches it with.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from cargohold.client import RegistryClient, StaticKeychain, TransportOptions
from cargohold.client.keychain import Credentials
from cargohold.digest import Digest
from cargohold.formats import MediaType
from cargohold.proxy.upstream import UpstreamSettings
from cargohold.reference import Reference
from tests.support.requirements import require_tool
from tests.support.servers import SRC, free_port, stop_process, wait_for_http

USERNAME = "proxy-user"
PASSWORD = "proxy-pass-1"
#: bcrypt's cheapest cost and lenient lockouts, so logins are fast and bad ones do not lock tests out
FAST_ENV = {
    "CARGOHOLD_PASSWORD_COST": "4",
    "CARGOHOLD_LOGIN_FAILURES_PER_ACCOUNT": "1000",
    "CARGOHOLD_LOGIN_FAILURES_PER_ACCOUNT_ADDRESS": "1000",
    "CARGOHOLD_LOGIN_FAILURES_PER_ADDRESS": "1000",
}
#: a line of Distribution's access log (Apache combined format)
_DISTRIBUTION_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3}) ')


@dataclass(frozen=True)
class PushedImage:
    """An image pushed to an upstream: its manifest and blobs (config first)."""

    repository: str
    tag: str
    manifest: bytes
    manifest_digest: str
    media_type: str
    blobs: dict[str, bytes]

    @property
    def layers(self) -> list[str]:
        return list(self.blobs)[1:]


@dataclass
class UpstreamServer:
    """A registry process on 127.0.0.1:port, with the credentials a proxy pulls with."""

    kind: str  # "distribution" or "cargohold"
    port: int
    base: Path
    argv: list[str]
    env: dict[str, str]
    username: str
    password: str
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.base / f"{self.kind}.log"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> UpstreamServer:
        """Start (or start again, on the same port and data)."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        try:
            wait_for_http(f"{self.url}/v2/", self.process)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; its log ends:\n{self.log()[-2000:]}") from None
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def settings(self, name: str = "upstream", **changes: Any) -> UpstreamSettings:
        """How a proxy reaches this upstream, with its credentials (``changes`` override)."""
        settings = UpstreamSettings(name=name, url=self.url, username=self.username, password=self.password,
                                    timeout_seconds=10.0)
        return replace(settings, **changes)

    def client(self) -> RegistryClient:
        """A client with push rights (close it)."""
        return RegistryClient(
            keychain=StaticKeychain(Credentials(self.username, self.password), [self.host]),
            options=TransportOptions(retries=1, backoff=0.05, insecure_registries=frozenset({self.host})),
        )

    def push_image(
        self, repository: str | None = None, tag: str = "v1", layers: list[bytes] | None = None
    ) -> PushedImage:
        """Push an OCI image of small random layers (or ``layers``); a fresh repository by default."""
        repository = repository or f"test/r{uuid.uuid4().hex[:10]}"
        layers = layers if layers is not None else [secrets.token_bytes(4096 + i * 1000) for i in range(2)]
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
                             "diff_ids": [str(Digest.of(layer)) for layer in layers]}}).encode()
        blobs = {str(Digest.of(data)): data for data in [config, *layers]}
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": MediaType.OCI_MANIFEST,
            "config": {"mediaType": MediaType.OCI_CONFIG, "digest": str(Digest.of(config)), "size": len(config)},
            "layers": [{"mediaType": MediaType.OCI_LAYER_GZIP, "digest": str(Digest.of(layer)),
                        "size": len(layer)} for layer in layers],
        }).encode()
        ref = Reference(self.host, repository, tag=tag)
        with self.client() as client:
            for digest, data in blobs.items():
                client.upload_blob(ref, Digest.parse(digest), len(data), [data])
            pushed = client.put_manifest(ref, manifest, MediaType.OCI_MANIFEST)
        return PushedImage(repository, tag, manifest, str(pushed), MediaType.OCI_MANIFEST, blobs)

    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request answered so far, from the access log."""
        if self.kind == "distribution":
            found = []
            for line in self.log().splitlines():
                match = _DISTRIBUTION_LINE.search(line)
                if match is not None:
                    found.append((match["method"], match["path"], int(match["status"])))
            return found
        # cargohold writes its log asynchronously: a marker request, once logged, follows everything before it
        marker = f"/v2/log-marker/{uuid.uuid4().hex}/tags/list"
        httpx.get(self.url + marker)
        deadline = time.monotonic() + 10
        while True:
            entries = []
            for line in self.log().splitlines():
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        entries.append(json.loads(line))
            if any(entry.get("path") == marker for entry in entries):
                return [(str(e["method"]), str(e["path"]), int(e["status"])) for e in entries
                        if "method" in e and not str(e.get("path", "")).startswith("/v2/log-marker/")]
            if time.monotonic() > deadline:
                raise AssertionError(f"the marker request {marker} never showed up in the access log")
            time.sleep(0.05)

    def gets(self, repository: str, kind: str, reference: str | None = None) -> int:
        """GETs of ``repository``'s ``kind`` (``blobs`` or ``manifests``) answered with content
        (200/206, or 307 to storage), of ``reference`` only if given."""
        prefix = f"/v2/{repository}/{kind}/"
        return sum(
            1 for method, path, status in self.requests()
            if method == "GET" and status in (200, 206, 307) and path.split("?")[0].startswith(prefix)
            and (reference is None or path.split("?")[0] == prefix + reference)
        )

    def blob_file(self, digest: str) -> Path:
        """Where Distribution's filesystem storage keeps a blob's bytes."""
        assert self.kind == "distribution"
        algorithm, hex_ = digest.split(":")
        return self.base / "data" / "docker" / "registry" / "v2" / "blobs" / algorithm / hex_[:2] / hex_ / "data"


def start_distribution(base: Path) -> UpstreamServer:
    """Distribution 2.8 with htpasswd auth (user :data:`USERNAME`), logging every request."""
    require_tool("docker-registry")
    import bcrypt

    base.mkdir(parents=True, exist_ok=True)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    (base / "htpasswd").write_text(f"{USERNAME}:{hashed}\n")
    port = free_port()
    config = base / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: info, accesslog: {disabled: false}}\n"
        "storage:\n"
        f"  filesystem: {{rootdirectory: {base / 'data'}}}\n"
        "  delete: {enabled: true}\n"
        "  cache: {blobdescriptor: inmemory}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: cargohold-proxy-test\n"
        f"auth:\n  htpasswd:\n    realm: cargohold-proxy-test\n    path: {base / 'htpasswd'}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # aws-sdk-go panics on it
    server = UpstreamServer("distribution", port, base, ["docker-registry", "serve", str(config)], env,
                            USERNAME, PASSWORD)
    return server.start()


def start_cargohold(base: Path) -> UpstreamServer:
    """cargohold with token auth; :data:`USERNAME` is a superuser."""
    from cargohold.auth.passwords import hash_password
    from tests.auth.world import store_for

    data = base / "data"
    store = store_for(data)
    store.create_user(USERNAME, hash_password(PASSWORD, 4), superuser=True)
    store.close()
    port = free_port()
    argv = [sys.executable, "-m", "cargohold.cli.main", "serve", "--listen", f"127.0.0.1:{port}",
            "--data-dir", str(data), "--auth", "token", "--workers", "1"]
    env = {**os.environ, "PYTHONPATH": str(SRC), **FAST_ENV}
    return UpstreamServer("cargohold", port, base, argv, env, USERNAME, PASSWORD).start()


@pytest.fixture(scope="session")
def distribution_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamServer]:
    server = start_distribution(tmp_path_factory.mktemp("upstream-distribution"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def cargohold_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamServer]:
    server = start_cargohold(tmp_path_factory.mktemp("upstream-cargohold"))
    yield server
    server.stop()


@pytest.fixture(params=["distribution", "cargohold"])
def any_upstream(
    request: pytest.FixtureRequest, distribution_upstream: UpstreamServer, cargohold_upstream: UpstreamServer
) -> UpstreamServer:
    """Each upstream in turn: htpasswd (basic) Distribution, token-auth cargohold."""
    return distribution_upstream if request.param == "distribution" else cargohold_upstream


@pytest.fixture
def start_distribution_upstream(tmp_path: Path) -> Iterator[Callable[[], UpstreamServer]]:
    """Start a Distribution of this test's own (stopped at the end), for tests that stop or break it."""
    started: list[UpstreamServer] = []

    def start() -> UpstreamServer:
        server = start_distribution(tmp_path / f"distribution-{len(started)}")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def sqlite_rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return list(db.execute(query))
