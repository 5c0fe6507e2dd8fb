"""Migrations run by ``cargohold migrate`` (or serve's parent), once; opening a store only checks the schema."""

from __future__ import annotations

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
from tests.support.servers import SRC

KNOWN = [m.version for m in load_migrations("sqlite")]
LATEST = KNOWN[-1]
#: the version before the newest (numbers may leave gaps)
PREVIOUS = KNOWN[-2]


def _cli(data: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cargohold.cli.main", "migrate", "--data-dir", str(data), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(SRC)},
    )


def _run(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    process = _cli(data, *args)
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _recorded(db: Path) -> list[int]:
    with closing(sqlite3.connect(db)) as connection:
        return [row[0] for row in connection.execute("SELECT version FROM schema_migrations ORDER BY version")]


def _tables(db: Path) -> set[str]:
    with closing(sqlite3.connect(db)) as connection:
        return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _migrated_to(db: Path, last: int) -> None:
    """A database as an older cargohold, which knew migrations up to ``last``, left it."""
    with closing(sqlite3.connect(db, isolation_level=None)) as connection:
        connection.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                           "applied_at BIGINT NOT NULL)")
        for migration in load_migrations("sqlite"):
            if migration.version <= last:
                for statement in split_statements(migration.sql):
                    connection.execute(statement)
                connection.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)",
                                   (migration.version, migration.name))


def test_two_migrate_processes_at_once_apply_each_migration_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for attempt in range(3):  # a fresh database each time: the race is on the first migration
        folder = data / str(attempt)
        processes = [_cli(folder, "--json") for _ in range(2)]
        results = [p.communicate(timeout=60) for p in processes]
        assert [p.returncode for p in processes] == [0, 0], results
        applied = [m["version"] for out, _ in results for m in json.loads(out)["applied"]]
        assert sorted(applied) == KNOWN  # each once, by one process or the other
        assert _recorded(folder / "metadata.db") == KNOWN
        assert all(json.loads(out)["version"] == LATEST for out, _ in results)


def test_migrate_prints_what_it_applied_then_nothing(tmp_path: Path) -> None:
    first = _run(tmp_path / "data")
    assert first.returncode == 0, first.stderr
    labels = [f"applied {m.label}" for m in load_migrations("sqlite")]
    assert first.stdout.splitlines()[:-1] == labels
    assert first.stdout.splitlines()[-1].endswith(f"schema at {LATEST}")
    again = _run(tmp_path / "data")
    assert again.returncode == 0 and again.stdout.strip().endswith(f"schema at {LATEST} (nothing to apply)")


def test_status_lists_applied_and_pending_and_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "data" / "metadata.db"
    fresh = json.loads(_run(tmp_path / "data", "--status", "--json").stdout)
    assert fresh["version"] == 0 and {m["state"] for m in fresh["migrations"]} == {"pending"}
    assert not db.exists()
    db.parent.mkdir()
    _migrated_to(db, PREVIOUS)
    status = json.loads(_run(tmp_path / "data", "--status", "--json").stdout)
    assert status["version"] == PREVIOUS
    assert [(m["version"], m["state"]) for m in status["migrations"]] == [
        (v, "applied" if v < LATEST else "pending") for v in KNOWN]
    assert status["migrations"][0]["appliedAt"] == "1970-01-01T00:00:00Z"
    assert status["migrations"][-1]["appliedAt"] is None
    text = _run(tmp_path / "data", "--status").stdout.splitlines()
    assert text[0].endswith(f"schema at {PREVIOUS}") and text[-1].endswith("pending")
    assert _recorded(db) == KNOWN[:-1]


def test_opening_a_store_does_not_migrate_and_refuses_a_database_behind(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with pytest.raises(SchemaError) as missing:
        open_metadata_store(f"sqlite://{db}")
    assert str(missing.value) == f"database schema is at 0, this cargohold needs {LATEST}: run `cargohold migrate`"
    assert not db.exists()  # refused without creating an empty database
    _migrated_to(db, PREVIOUS)
    with pytest.raises(SchemaError) as behind:
        open_metadata_store(f"sqlite://{db}")
    assert str(behind.value) == (
        f"database schema is at {PREVIOUS}, this cargohold needs {LATEST}: run `cargohold migrate`")
    assert _recorded(db) == KNOWN[:-1]
    assert [m.version for m in migrate(f"sqlite://{db}").applied] == [LATEST]
    open_metadata_store(f"sqlite://{db}")


def test_a_database_ahead_of_the_code_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "data" / "metadata.db"
    db.parent.mkdir()
    migrate(f"sqlite://{db}")
    with closing(sqlite3.connect(db)) as connection:
        connection.execute("INSERT INTO schema_migrations VALUES (?, 'from_the_future', 0)", (LATEST + 1,))
        connection.commit()
    newer = (f"database schema is at {LATEST + 1}, newer than this cargohold knows ({LATEST}): "
             "it was migrated by a newer cargohold; run that one (there are no downgrades)")
    with pytest.raises(SchemaError) as opened:
        open_metadata_store(f"sqlite://{db}")
    assert str(opened.value) == newer
    result = _run(tmp_path / "data")
    assert (result.returncode, result.stdout, result.stderr) == (1, "", f"cargohold migrate: {newer}\n")
    status = json.loads(_run(tmp_path / "data", "--status", "--json").stdout)
    assert status["version"] == LATEST + 1 and status["migrations"][-1]["state"] == "unknown"


def test_a_failing_migration_is_rolled_back_and_the_ones_before_it_stay(tmp_path: Path) -> None:
    db = tmp_path / "data" / "metadata.db"
    db.parent.mkdir()
    # 0006 fails after its first statements ran; the ones after it are not tried
    failing = next(m for m in load_migrations("sqlite") if m.name == "credential_generations")
    _migrated_to(db, failing.version - 1)
    with closing(sqlite3.connect(db)) as connection:  # what that migration will trip over
        connection.execute("CREATE TABLE credential_generation (x INTEGER)")
        connection.commit()
    result = _run(tmp_path / "data")
    assert result.returncode == 1
    assert result.stderr.startswith(f"cargohold migrate: migration {failing.label} failed (rolled back): ")
    assert _recorded(db) == KNOWN[: KNOWN.index(failing.version)]
    with closing(sqlite3.connect(db)) as connection:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(accounts)")}
    assert "credentials_generation" not in columns  # its earlier statements were undone too
    as_json = _run(tmp_path / "data", "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout) == {"database": f"sqlite://{db}", "applied": []}
