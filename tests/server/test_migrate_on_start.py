"""``serve`` migrates in its own process before the workers start; a worker never migrates."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import httpx

from cargohold.metadata.migrations import load_migrations
from tests.support.servers import SRC, cargohold, free_port

MIGRATIONS = load_migrations("sqlite")
LATEST = MIGRATIONS[-1].version
ENV = {**os.environ, "PYTHONPATH": str(SRC)}


def _set_recorded(db: Path, sql: str, *args: object) -> None:
    with closing(sqlite3.connect(db)) as connection:
        connection.execute(sql, args)
        connection.commit()


def test_serve_on_a_fresh_directory_migrates_once_then_serves(tmp_path: Path) -> None:
    with cargohold(tmp_path) as server:
        assert httpx.get(f"{server.url}/v2/").status_code == 200
        log = server.log()
    labels = ", ".join(m.label for m in MIGRATIONS)
    assert f"cargohold: database schema migrated to {LATEST} ({labels})" in log
    with cargohold(tmp_path) as again:  # the second start finds nothing to apply
        assert httpx.get(f"{again.url}/v2/").status_code == 200
        assert "migrated" not in again.log()


def test_serve_brings_a_database_behind_up_to_date(tmp_path: Path) -> None:
    with cargohold(tmp_path):
        pass
    db = tmp_path / "data" / "metadata.db"
    # undo the last migration's record and its table, as an older cargohold left the database
    _set_recorded(db, "DELETE FROM schema_migrations WHERE version = ?", LATEST)
    for table in re.findall(r"CREATE TABLE (\w+)", MIGRATIONS[-1].sql):
        _set_recorded(db, f"DROP TABLE {table}")
    with cargohold(tmp_path, "--workers", "2") as server:
        assert httpx.get(f"{server.url}/v2/").status_code == 200
        assert f"database schema migrated to {LATEST} ({MIGRATIONS[-1].label})" in server.log()


def test_serve_refuses_a_database_ahead_of_the_code(tmp_path: Path) -> None:
    with cargohold(tmp_path):
        pass
    db = tmp_path / "data" / "metadata.db"
    _set_recorded(db, "INSERT INTO schema_migrations VALUES (?, 'from_the_future', 0)", LATEST + 1)
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "cargohold.cli.main", "serve", "--data-dir", str(tmp_path / "data"),
         "--listen", f"127.0.0.1:{port}"], capture_output=True, text=True, env=ENV, timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr == (f"cargohold: database schema is at {LATEST + 1}, newer than this cargohold knows "
                             f"({LATEST}): it was migrated by a newer cargohold; run that one (there are no "
                             "downgrades)\n")
    assert "listening" not in result.stdout


WORKER = """
import os
from granian import Granian
from granian.constants import Interfaces
from cargohold.api.server import CONFIG_ENV, SERVER_PID_ENV
from cargohold.config import load_config

config = load_config(None, {"data_dir": os.environ["DATA"], "listen": os.environ["LISTEN"]}, {})
os.environ[CONFIG_ENV] = config.to_json()
os.environ[SERVER_PID_ENV] = str(os.getpid())
Granian("cargohold.api.server:app_from_environment", address=config.server.host, port=config.server.port,
        interface=Interfaces.ASGI, factory=True, workers=1).serve()
"""


def test_a_worker_on_an_unmigrated_database_refuses_in_one_line(tmp_path: Path) -> None:
    """Workers started as serve starts them, but on a database nobody migrated: no worker migrates it."""
    data = tmp_path / "data"
    data.mkdir()
    sqlite3.connect(data / "metadata.db").close()  # exists, empty: schema 0
    result = subprocess.run(
        [sys.executable, "-c", WORKER], capture_output=True, text=True, timeout=60,
        env={**ENV, "DATA": str(data), "LISTEN": f"127.0.0.1:{free_port()}"},
    )
    assert result.returncode != 0
    refusals = [line for line in result.stderr.splitlines() if line.startswith("cargohold: worker ")]
    assert len(refusals) == 1, result.stderr
    assert refusals[0].endswith(f": database schema is at 0, this cargohold needs {LATEST}: run `cargohold migrate`")
    assert "Traceback" not in result.stderr
    with closing(sqlite3.connect(data / "metadata.db")) as connection:
        assert connection.execute("SELECT name FROM sqlite_master").fetchall() == []  # untouched
