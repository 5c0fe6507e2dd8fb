"""A throwaway PostgreSQL 15 cluster for tests: initdb into a temporary folder, a free loopback port,
trust authentication, no fsync; one per test session, stopped by the postmaster's PID at the end.

Each test gets a database of its own: an empty one (``CREATE DATABASE``), or a copy of one
migrated once per session (``CREATE DATABASE … TEMPLATE``), which is faster than migrating.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.requirements import require
from tests.support.servers import free_port

BIN = Path("/usr/lib/postgresql/15/bin")
#: the metadata backends a contract suite runs against (``@pytest.fixture(params=BACKENDS)``)
BACKENDS = ["sqlite", "postgres"]
#: the user the server runs as when the tests run as root (it refuses to run as root)
SERVER_USER = "postgres"


@dataclass
class PostgresCluster:
    root: Path
    port: int
    pid: int
    _names: itertools.count[int] = field(default_factory=itertools.count)
    _migrated: str | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def execute(self, statement: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as db:
            db.execute(statement)  # type: ignore[arg-type]

    def fresh_database(self) -> str:
        """The URL of a new empty database."""
        name = f"test_{next(self._names)}"
        self.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.url(name)

    def migrated_database(self) -> str:
        """The URL of a new database at this cargohold's schema."""
        from cargohold.metadata import migrate

        if self._migrated is None:
            url = self.fresh_database()
            migrate(url)
            self._migrated = url.rsplit("/", 1)[1]
        name = f"test_{next(self._names)}"
        self.execute(f"CREATE DATABASE {name} TEMPLATE {self._migrated}")
        return self.url(name)

    def start(self) -> None:
        """Start the server (again, after :meth:`halt`) on the same port and data."""
        run_as = ["runuser", "-u", SERVER_USER, "--"] if os.geteuid() == 0 else []
        data, log = self.root / "data", self.root / "server.log"
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
                   " -c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
        started = subprocess.run([*run_as, str(BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "30",
                                  "-o", options, "start"], capture_output=True, text=True)
        if started.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {started.stderr}\n{log.read_text(errors='replace')[-2000:]}")
        self.pid = int((data / "postmaster.pid").read_text().split()[0])

    def halt(self) -> None:
        """Stop the server, keeping its data (a database that goes down)."""
        with _suppress_gone():
            os.kill(self.pid, signal.SIGINT)  # fast shutdown: disconnect every client, then exit
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _alive(self.pid):
            time.sleep(0.05)
        if _alive(self.pid):
            with _suppress_gone():
                os.kill(self.pid, signal.SIGKILL)

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.root, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of ours is gone too (pg_ctl's server is not our child: it is reaped by init)
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


class _suppress_gone:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, *_: object) -> bool:
        return kind is ProcessLookupError


def start_cluster(root: Path) -> PostgresCluster:
    """initdb and start a cluster in ``root`` (about a second)."""
    require((BIN / "initdb").exists(),
            f"PostgreSQL 15 is not installed (no {BIN}/initdb): apt-get install postgresql-15")
    as_root = os.geteuid() == 0
    run_as = ["runuser", "-u", SERVER_USER, "--"] if as_root else []
    root.mkdir(parents=True, exist_ok=True)
    if as_root:
        shutil.chown(root, SERVER_USER, SERVER_USER)
    subprocess.run([*run_as, str(BIN / "initdb"), "-D", str(root / "data"), "-U", "postgres", "-A", "trust",
                    "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"], check=True, capture_output=True)
    cluster = PostgresCluster(root, free_port(), 0)
    cluster.start()
    return cluster


def database_url(request: pytest.FixtureRequest, tmp_path: Path, *, migrated: bool = True) -> str:
    """A metadata database of the test's own for the backend of ``request.param`` (one of :data:`BACKENDS`):
    migrated to this cargohold's schema, or empty."""
    if request.param == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        return cluster.migrated_database() if migrated else cluster.fresh_database()
    url = f"sqlite://{tmp_path / 'm.db'}"
    if migrated:
        from cargohold.metadata import migrate

        migrate(url)
    return url


def query(url: str, statement: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement (``?`` placeholders) on a metadata database of either backend, committed; its rows."""
    if url.startswith("sqlite://"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite://"), isolation_level=None)) as db:
            return list(db.execute(statement, args))
    import psycopg

    with psycopg.connect(url, autocommit=True) as pg:
        cursor = pg.execute(statement.replace("?", "%s"), args)  # type: ignore[arg-type]
        return list(cursor.fetchall()) if cursor.description else []
