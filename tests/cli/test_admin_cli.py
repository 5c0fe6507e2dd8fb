"""``cargohold admin`` on a data directory: empty lists, --json for changes, a directory that holds no registry."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cargohold.cli.main import main
from tests.support.postgres import BACKENDS, database_url

FAST = {"CARGOHOLD_PASSWORD_COST": "4"}


def admin(data: Path | Registry, *args: str, stdin: str = "", command: str = "admin") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    where = data.args if isinstance(data, Registry) else ["--data-dir", str(data)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([command, *where, *args])
    finally:
        sys.stdin = saved
    return code, out.getvalue(), err.getvalue()


@dataclass(frozen=True)
class Registry:
    """A new registry: a data directory, and for PostgreSQL an empty database (``--database-url``)."""

    args: list[str]


@pytest.fixture(params=BACKENDS)
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Registry:
    args = ["--data-dir", str(tmp_path / "data")]
    if request.param == "postgres":
        args += ["--database-url", database_url(request, tmp_path, migrated=False)]
    return Registry(args)


@pytest.fixture(autouse=True)
def fast_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAST.items():
        monkeypatch.setenv(name, value)


def test_lists_of_nothing(registry: Registry) -> None:
    data = registry
    assert admin(data, "user", "add", "alice", "--password-stdin", stdin="alice-password\n")[0] == 0
    assert admin(data, "user", "delete", "alice")[0] == 0
    assert admin(data, "user", "list") == (0, "NAME  SUPERUSER  DISABLED\n", "")
    assert admin(data, "user", "list", "--json") == (0, "[]\n", "")
    assert admin(data, "robot", "list")[:2] == (0, "NAME  OWNER\n")
    assert admin(data, "org", "list", "--json")[:2] == (0, "[]\n")


def test_changes_answer_json(registry: Registry) -> None:
    data = registry
    code, out, err = admin(data, "user", "add", "root", "--superuser", "--password-stdin", "--json",
                           stdin="root-password\n")
    assert code == 0, err
    assert json.loads(out) == {"name": "root", "superuser": True, "created": True}
    code, out, err = admin(data, "robot", "add", "root", "ci", "--json")
    assert code == 0 and err == ""
    robot = json.loads(out)
    assert robot["name"] == "root+ci" and robot["owner"] == "root" and robot["token"]
    code, out, _ = admin(data, "robot", "rotate", "root+ci", "--json")
    assert code == 0 and json.loads(out)["token"] not in ("", robot["token"])
    code, out, _ = admin(data, "org", "add", "acme", "--owner", "root", "--json")
    assert json.loads(out) == {"name": "acme", "owners": ["root"], "created": True}
    code, out, _ = admin(data, "grant", "read", "root+ci", "acme/app", "--json")
    assert json.loads(out) == {"grantee": "root+ci", "role": "read", "repository": "acme/app"}
    code, out, _ = admin(data, "repo", "public", "acme/app", "--json")
    assert json.loads(out) == {"repository": "acme/app", "visibility": "public"}
    # without --json: the sentences as before
    code, out, _ = admin(data, "user", "add", "bob", "--password-stdin", stdin="bob-password\n")
    assert (code, out) == (0, "user bob created\n")
    # the changes' audit entries, read by cargohold audit from the same database
    code, out, err = admin(data, "--action", "admin", "--json", command="audit")
    assert code == 0, err
    entries = [json.loads(line) for line in out.splitlines()]
    assert len(entries) >= 7 and all(entry["action"].startswith("admin") for entry in entries)
    assert admin(data, "list", command="webhooks")[0] == 0


def test_a_directory_without_a_registry_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert admin(data, "user", "add", "alice", "--superuser", "--password-stdin", stdin="alice-password\n")[0] == 0
    typo = tmp_path / "dta"
    code, out, err = admin(typo, "user", "list")
    assert code == 2 and out == ""
    assert err.startswith("cargohold admin: ") and "holds no registry" in err and err.count("\n") == 1
    assert not typo.exists()  # nothing created
    os.mkdir(typo)  # an existing but empty directory holds no registry either
    assert admin(typo, "grant", "read", "alice", "alice/app")[0] == 2
    assert os.listdir(typo) == []
    # the first user creates the registry, and says so
    code, out, err = admin(typo, "user", "add", "root", "--superuser", "--password-stdin", stdin="root-password\n")
    assert code == 0 and "creating a new registry" in err
    assert admin(typo, "user", "list", "--json")[0] == 0


def test_an_existing_database_behind_is_refused_not_migrated(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert admin(data, "user", "add", "alice", "--password-stdin", stdin="alice-password\n")[0] == 0
    db = data / "metadata.db"
    with contextlib.closing(sqlite3.connect(db)) as connection:  # as if the last migration were new
        latest = connection.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
        connection.execute("DELETE FROM schema_migrations WHERE version = ?", (latest,))
        connection.commit()
        previous = connection.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]  # numbers may skip
    for args in (["user", "list"], ["user", "add", "bob", "--password-stdin"]):
        code, out, err = admin(data, *args, stdin="bob-password\n")
        assert (code, out, err) == (2, "", f"cargohold admin: database schema is at {previous}, this cargohold "
                                           f"needs {latest}: run `cargohold migrate`\n")
    with contextlib.closing(sqlite3.connect(db)) as connection:
        assert connection.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] == previous


def test_immutable_tag_rules(registry: Registry) -> None:
    data = registry
    assert admin(data, "user", "add", "root", "--superuser", "--password-stdin", stdin="root-password\n")[0] == 0
    assert admin(data, "immutable", "list") == (0, "ID  REPOSITORY  TAG  CREATED_BY\n", "")
    code, out, err = admin(data, "immutable", "add", "prod/*", "v*")
    assert code == 0, err
    assert out.startswith("immutable tag rule 1 (repository 'prod/*', tag 'v*') added")
    code, out, _ = admin(data, "immutable", "add", "acme/app", "release-[0-9]*", "--json")
    second = json.loads(out)
    assert (second["id"], second["repository"], second["tag"]) == (2, "acme/app", "release-[0-9]*")
    listed = json.loads(admin(data, "immutable", "list", "--json")[1])
    assert [(r["id"], r["repository"], r["tag"]) for r in listed] == [(1, "prod/*", "v*"),
                                                                       (2, "acme/app", "release-[0-9]*")]
    # refusals: one line each, exit 1, nothing stored
    for args, message in [
        (("add", "prod/*", "v*"), "a rule for repository 'prod/*' and tag 'v*' exists already"),
        (("add", "Prod/*", "v*"), "repository pattern 'Prod/*' is not a glob over repository names"),
        (("add", "prod/*", "v:1"), "tag pattern 'v:1' is not a glob over tag names"),
        (("add", "prod/[a", "v*"), "repository pattern 'prod/[a' has an unbalanced [ ]"),
        (("remove", "9"), "no immutable tag rule 9"),
    ]:
        code, out, err = admin(data, "immutable", *args)
        assert (code, out) == (1, "") and err.startswith(f"cargohold admin: {message}"), err
        assert err.count("\n") == 1
    assert len(json.loads(admin(data, "immutable", "list", "--json")[1])) == 2
    code, out, err = admin(data, "immutable", "remove", "1")
    assert (code, out) == (0, "immutable tag rule 1 (repository 'prod/*', tag 'v*') lifted\n"), err
    # ids are not reused: the audit log names rules by id
    again = json.loads(admin(data, "immutable", "add", "prod/*", "v*", "--json")[1])["id"]
    assert again > 2
    code, out, err = admin(data, "--action", "admin", "--json", command="audit")
    changes = [(e["detail"]["change"], e["repository"], e["detail"]["id"]) for e in map(json.loads, out.splitlines())
               if e["detail"]["change"].startswith("immutable.")]
    assert changes == [("immutable.add", "prod/*", again), ("immutable.remove", "prod/*", 1),
                       ("immutable.add", "acme/app", 2), ("immutable.add", "prod/*", 1)]
