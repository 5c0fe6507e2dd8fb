"""Start real servers on free loopback ports for tests, and stop them by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.stored import StoredBlobs, digest_of, stored_blobs

SRC = Path(__file__).resolve().parents[2] / "src"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, process: subprocess.Popen[bytes] | None, timeout: float = 20.0, **kw: object) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1.0, **kw)  # type: ignore[arg-type]
            return
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class CargoholdServer:
    """A ``cargohold serve`` process and where it keeps its data."""

    data_dir: Path
    port: int
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    scheme: str = "http"
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    #: the command to run instead of this checkout's sources (e.g. an installed ``cargohold`` script)
    command: list[str] | None = None
    #: ``--database-url``: None for SQLite in the data directory
    database_url: str | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, verify: object = True) -> CargoholdServer:
        env = {**os.environ, "PYTHONPATH": str(SRC), **self.env} if self.command is None else self.env
        self.log_path = self.data_dir.parent / f"cargohold-{self.port}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child process owns it
        self.process = subprocess.Popen(
            [*(self.command or [sys.executable, "-m", "cargohold.cli.main"]), "serve", "--listen", self.host,
             "--data-dir", str(self.data_dir),
             *(["--database-url", self.database_url] if self.database_url else []), *self.args],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        log.close()
        try:
            wait_for_http(f"{self.url}/v2/", self.process, verify=verify)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; its output ends:\n{self.log()[-2000:]}") from None
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            stop_process(self.process, sig)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def token_key_pem(self) -> bytes:
        """The token signing key the server made and keeps in its database."""
        select = "SELECT pem FROM signing_keys WHERE name = 'token'"
        if self.database_url is not None:
            import psycopg

            with psycopg.connect(self.database_url) as pg:
                return str(pg.execute(select).fetchall()[0][0]).encode()
        with contextlib.closing(sqlite3.connect(self.data_dir / "metadata.db")) as db:
            return str(db.execute(select).fetchall()[0][0]).encode()

    # what is on disk, for "nothing half-written" checks

    def stored(self) -> StoredBlobs:
        """The blob store's contents (the data directory's files, or its S3 bucket's objects)."""
        return stored_blobs(self.data_dir, self.env, self.database_url)

    def upload_files(self) -> set[str]:
        """The ids of the upload sessions with anything in the blob store."""
        return self.stored().uploads()

    def upload_rows(self) -> set[str]:
        # a completed session's row outlives its bytes (it answers a retried final PUT)
        if self.database_url is not None:
            import psycopg

            with psycopg.connect(self.database_url) as pg:
                return {row[0] for row in pg.execute("SELECT id FROM uploads WHERE NOT completed")}
        with contextlib.closing(sqlite3.connect(self.data_dir / "metadata.db")) as db:
            return {row[0] for row in db.execute("SELECT id FROM uploads WHERE completed = 0")}

    def blob_files(self) -> dict[str, str]:
        """Digest -> where the blob store keeps its bytes (a file's path, an object's key)."""
        return self.stored().blobs()

    def assert_storage_consistent(self) -> None:
        """Every stored blob matches its digest; every stored upload belongs to a live session; nothing
        is stored that no record names."""
        stored = self.stored()
        for digest, where in stored.blobs().items():
            assert digest_of(stored, where, digest.split(":")[0]) == digest, f"blob {digest} holds other bytes"
        assert stored.uploads() == self.upload_rows(), "stored uploads and sessions disagree"
        assert stored.strays() == [], "stored without a record"


@contextlib.contextmanager
def cargohold(
    tmp: Path, *args: str, env: dict[str, str] | None = None, database_url: str | None = None
) -> Iterator[CargoholdServer]:
    """A server on a free port; its metadata in ``database_url`` (None: SQLite in its data directory)."""
    server = CargoholdServer(tmp / "data", free_port(), list(args), env or {}, database_url=database_url).start()
    try:
        yield server
    finally:
        server.stop()
