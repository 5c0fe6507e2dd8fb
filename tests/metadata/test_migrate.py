"""Migrations run by ``cargohold migrate`` (or serve's parent), once; opening a store only checks the schema."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from cargohold.metadata import migrate, open_metadata_store
from cargohold.metadata.migrations import SchemaError, load_migrations, split_statements
from tests.support.postgres import BACKENDS, PostgresCluster
from tests.support.servers import SRC

KNOWN = [m.version for m in load_migrations("sqlite")]
LATEST = KNOWN[-1]
#: the version before the newest (numbers may leave gaps)
PREVIOUS = KNOWN[-2]


class Database:
    """A metadata database of one backend, as the tests create, break and inspect it."""

    def __init__(self, backend: str, url: str, data: Path, postgres: PostgresCluster | None):
        self.backend, self.url, self.data, self._postgres = backend, url, data, postgres

    @property
    def path(self) -> Path:
        return Path(self.url.removeprefix("sqlite://"))

    def exists(self) -> bool:
        return self.backend != "sqlite" or self.path.exists()

    def rows(self, query: str) -> list[tuple[object, ...]]:
        if self.backend == "sqlite":
            with closing(sqlite3.connect(self.path)) as connection:
                return list(connection.execute(query))
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as db:
            return list(db.execute(query))  # type: ignore[arg-type]

    def execute(self, *statements: str) -> None:
        """Each statement committed on its own."""
        if self.backend == "sqlite":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(self.path, isolation_level=None)) as connection:
                for statement in statements:
                    connection.execute(statement)
            return
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as db:
            for statement in statements:
                db.execute(statement)  # type: ignore[arg-type]

    def recorded(self) -> list[int]:
        return [int(row[0]) for row in self.rows("SELECT version FROM schema_migrations ORDER BY version")]  # type: ignore[call-overload]

    def columns(self, table: str) -> set[str]:
        if self.backend == "sqlite":
            return {str(row[1]) for row in self.rows(f"PRAGMA table_info({table})")}
        return {str(row[0]) for row in self.rows(
            f"SELECT column_name FROM information_schema.columns WHERE table_name = '{table}'")}

    def migrated_to(self, last: int) -> None:
        """The database as an older cargohold, which knew migrations up to ``last``, left it."""
        statements = ["CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                      "applied_at BIGINT NOT NULL)"]
        for migration in load_migrations(self.backend):
            if migration.version <= last:
                statements += split_statements(migration.sql)
                statements.append(f"INSERT INTO schema_migrations VALUES ({migration.version}, '{migration.name}', 0)")
        self.execute(*statements)

    def another(self) -> Database:
        """A fresh database of the same backend."""
        if self._postgres is None:
            data = self.data.parent / f"{self.data.name}-again"
            return Database(self.backend, f"sqlite://{data / 'metadata.db'}", data, None)
        return Database(self.backend, self._postgres.fresh_database(), self.data, self._postgres)

    def cli(self, *args: str) -> subprocess.Popen[str]:
        where = ["--data-dir", str(self.data)] + (["--database-url", self.url] if self.backend != "sqlite" else [])
        return subprocess.Popen(
            [sys.executable, "-m", "cargohold.cli.main", "migrate", *where, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(SRC)},
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        process = self.cli(*args)
        out, err = process.communicate(timeout=60)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    """An empty database (none at all, for SQLite: the data directory's file does not exist yet)."""
    if request.param == "sqlite":
        return Database("sqlite", f"sqlite://{tmp_path / 'data' / 'metadata.db'}", tmp_path / "data", None)
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return Database("postgres", cluster.fresh_database(), tmp_path / "data", cluster)


def test_both_dialects_have_the_same_migrations() -> None:
    """The same version numbers and names in every dialect's folder: a version means one change."""
    assert [m.label for m in load_migrations("postgres")] == [m.label for m in load_migrations("sqlite")]


def test_two_migrate_processes_at_once_apply_each_migration_once(database: Database) -> None:
    for _ in range(3):  # a fresh database each time: the race is on the first migration
        database = database.another()
        processes = [database.cli("--json") for _ in range(2)]
        results = [p.communicate(timeout=60) for p in processes]
        assert [p.returncode for p in processes] == [0, 0], results
        applied = [m["version"] for out, _ in results for m in json.loads(out)["applied"]]
        assert sorted(applied) == KNOWN  # each once, by one process or the other
        assert database.recorded() == KNOWN
        assert all(json.loads(out)["version"] == LATEST for out, _ in results)


def test_migrate_prints_what_it_applied_then_nothing(database: Database) -> None:
    first = database.run()
    assert first.returncode == 0, first.stderr
    labels = [f"applied {m.label}" for m in load_migrations("sqlite")]
    assert first.stdout.splitlines()[:-1] == labels
    assert first.stdout.splitlines()[-1] == f"database {database.url}: schema at {LATEST}"
    again = database.run()
    assert again.returncode == 0 and again.stdout.strip().endswith(f"schema at {LATEST} (nothing to apply)")


def test_status_lists_applied_and_pending_and_changes_nothing(database: Database) -> None:
    fresh = json.loads(database.run("--status", "--json").stdout)
    assert fresh["version"] == 0 and {m["state"] for m in fresh["migrations"]} == {"pending"}
    assert not database.exists() or not database.rows("SELECT to_regclass('schema_migrations')")[0][0]
    database.migrated_to(PREVIOUS)
    status = json.loads(database.run("--status", "--json").stdout)
    assert status["version"] == PREVIOUS
    assert [(m["version"], m["state"]) for m in status["migrations"]] == [
        (v, "applied" if v < LATEST else "pending") for v in KNOWN]
    assert status["migrations"][0]["appliedAt"] == "1970-01-01T00:00:00Z"
    assert status["migrations"][-1]["appliedAt"] is None
    text = database.run("--status").stdout.splitlines()
    assert text[0].endswith(f"schema at {PREVIOUS}") and text[-1].endswith("pending")
    assert database.recorded() == KNOWN[:-1]


def test_opening_a_store_does_not_migrate_and_refuses_a_database_behind(database: Database) -> None:
    with pytest.raises(SchemaError) as missing:
        open_metadata_store(database.url)
    assert str(missing.value) == f"database schema is at 0, this cargohold needs {LATEST}: run `cargohold migrate`"
    assert not database.exists() or not database.rows("SELECT to_regclass('schema_migrations')")[0][0]
    database.migrated_to(PREVIOUS)
    with pytest.raises(SchemaError) as behind:
        open_metadata_store(database.url)
    assert str(behind.value) == (
        f"database schema is at {PREVIOUS}, this cargohold needs {LATEST}: run `cargohold migrate`")
    assert database.recorded() == KNOWN[:-1]
    assert [m.version for m in migrate(database.url).applied] == [LATEST]
    asyncio.run(open_metadata_store(database.url).close())


def test_a_database_ahead_of_the_code_is_refused(database: Database) -> None:
    database.data.mkdir()
    migrate(database.url)
    database.execute(f"INSERT INTO schema_migrations VALUES ({LATEST + 1}, 'from_the_future', 0)")
    newer = (f"database schema is at {LATEST + 1}, newer than this cargohold knows ({LATEST}): "
             "it was migrated by a newer cargohold; run that one (there are no downgrades)")
    with pytest.raises(SchemaError) as opened:
        open_metadata_store(database.url)
    assert str(opened.value) == newer
    result = database.run()
    assert (result.returncode, result.stdout, result.stderr) == (1, "", f"cargohold migrate: {newer}\n")
    status = json.loads(database.run("--status", "--json").stdout)
    assert status["version"] == LATEST + 1 and status["migrations"][-1]["state"] == "unknown"


def test_a_failing_migration_is_rolled_back_and_the_ones_before_it_stay(database: Database) -> None:
    # 0006 fails after its first statements ran (a table, a column); the ones after it are not tried
    failing = next(m for m in load_migrations("sqlite") if m.name == "credential_generations")
    database.migrated_to(failing.version - 1)
    # what that migration will trip over, after it has created its table and changed accounts
    database.execute("ALTER TABLE refresh_tokens ADD COLUMN credentials_generation BIGINT")
    result = database.run()
    assert result.returncode == 1
    assert result.stderr.startswith(f"cargohold migrate: migration {failing.label} failed (rolled back): ")
    assert database.recorded() == KNOWN[: KNOWN.index(failing.version)]
    assert "credentials_generation" not in database.columns("accounts")  # its earlier statements were undone too
    assert "credential_generation" not in {str(row[0]) for row in database.rows(
        "SELECT name FROM sqlite_master" if database.backend == "sqlite" else
        "SELECT table_name FROM information_schema.tables")}
    as_json = database.run("--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout) == {"database": database.url, "applied": []}


def test_a_sqlite_filesystem_registry_never_imports_the_postgresql_or_s3_driver(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from cargohold.config import load_config\n"
        "from cargohold.api.server import create_app\n"
        "from cargohold.metadata import migrate\n"
        f"config = load_config(None, {{'data_dir': {str(tmp_path)!r}, 'auth': 'token'}}, {{}})\n"
        "migrate(config.metadata_url)\n"
        "create_app(config)\n"
        "print(sorted(m for m in ('psycopg', 'psycopg_pool', 'boto3', 'botocore') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(SRC)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_printed_urls_hide_the_password(postgres: PostgresCluster, tmp_path: Path) -> None:
    url = postgres.fresh_database().replace("postgres@", "postgres:s3cret@")
    database = Database("postgres", url, tmp_path / "data", postgres)
    for args in ((), ("--status",), ("--json",)):
        done = database.run(*args)
        assert done.returncode == 0, done.stderr
        assert "s3cret" not in done.stdout + done.stderr and "postgres:***@127.0.0.1" in done.stdout
