"""The audit log as its readers see it: logins and tokens, ``GET /admin/v1/audit`` and ``cargohold audit``
(filters, pages), who may read which entries, and the changes made through the admin CLI and API."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import bcrypt
import httpx
import pytest

from cargohold.cli.main import main
from tests.api.helpers import codes
from tests.support.servers import CargoholdServer, cargohold

from .test_admin import in_process, ok
from .world import FAST_ENV, PRIVATE, PUBLIC, SECRETS, World, basic, populate, push_image, store_for


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The auth tests' cast on a server of this module's own; pushes by owner and writer."""
    tmp = tmp_path_factory.mktemp("audit-world")
    store = store_for(tmp / "data")
    populate(store)
    store.close()
    with cargohold(tmp, "--auth", "token", env=FAST_ENV) as server:
        world = World(server)
        with world.client("owner", f"repository:{PUBLIC}:pull,push", f"repository:{PRIVATE}:pull,push") as c:
            push_image(c, PUBLIC, "v1")
            push_image(c, PRIVATE, "v1")
        with world.client("writer", "repository:acme/tools:pull,push") as c:
            push_image(c, "acme/tools", "v1")
        yield world


def api(world: World, who: str | None, **params: str) -> httpx.Response:
    headers = {"Authorization": basic(who, SECRETS[who])} if who else {}
    return httpx.get(f"{world.url}/admin/v1/audit", params=params, headers=headers, timeout=30)


def entries(world: World, who: str, **params: str) -> list[dict[str, Any]]:
    response = api(world, who, **params)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["entries"]
    return found


def cli(server: CargoholdServer, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["audit", "--data-dir", str(server.data_dir), *args])
    return code, out.getvalue(), err.getvalue()


def test_logins_and_tokens_are_recorded_never_their_secrets(world: World) -> None:
    refused = world.token_response(None, f"repository:{PRIVATE}:pull")
    assert refused.status_code == 200  # anonymous: a token naming no one, not recorded
    wrong = httpx.get(f"{world.url}/auth/token", params={"service": "cargohold", "scope": f"repository:{PRIVATE}:pull"},
                      headers={"Authorization": basic("reader", "not-the-password")}, timeout=30)
    assert wrong.status_code == 401
    right = world.token_response("reader", f"repository:{PRIVATE}:pull,push")
    assert right.status_code == 200
    failed = entries(world, "root", action="login", actor="reader")[1]  # newest first: the success, then this
    assert (failed["result"], failed["actor"], failed["actor_kind"], failed["address"]) == (
        "denied", "reader", "user", "127.0.0.1")
    assert failed["request_id"] == wrong.headers["x-request-id"]
    assert failed["detail"] == {"reason": "wrong secret"}
    login = entries(world, "root", action="login", actor="reader")[0]
    assert (login["result"], login["request_id"]) == ("ok", right.headers["x-request-id"])
    issued = entries(world, "root", action="token.issue", actor="reader")
    assert len(issued) == 1  # the anonymous token is not an entry
    assert issued[0]["request_id"] == right.headers["x-request-id"]
    assert issued[0]["detail"]["scopes"] == [f"repository:{PRIVATE}:pull"]  # what was granted, not asked
    assert issued[0]["user_agent"].startswith("python-httpx/")
    # an unknown account: the name tried is the actor
    httpx.get(f"{world.url}/admin/v1/whoami", headers={"Authorization": basic("nobody", "guess-1234")}, timeout=30)
    assert entries(world, "root", actor="nobody")[0]["detail"] == {"reason": "unknown account"}
    # no secret anywhere in the log
    with contextlib.closing(sqlite3.connect(world.server.data_dir / "metadata.db")) as db:
        text = json.dumps(db.execute("SELECT * FROM events").fetchall())
    for secret in [*SECRETS.values(), "not-the-password", "guess-1234", right.json()["token"]]:
        assert secret not in text


def test_the_api_filters_and_pages_like_the_catalog(world: World) -> None:
    pushes = entries(world, "root", action="manifest.push")
    assert [(e["repository"], e["actor"]) for e in pushes[:3]] == [
        ("acme/tools", "writer"), (PRIVATE, "owner"), (PUBLIC, "owner")]
    assert [e["repository"] for e in entries(world, "root", action="manifest.push", repository="owner/*")] == [
        PRIVATE, PUBLIC]
    assert {e["action"] for e in entries(world, "root", repository="acme/*")} == {
        "repository.create", "blob.push", "manifest.push"}
    assert {e["actor"] for e in entries(world, "root", action="manifest")} == {"owner", "writer"}
    assert entries(world, "root", since="1h", action="manifest.push")[:3] == pushes[:3]
    assert entries(world, "root", until="2000-01-01T00:00:00Z") == []
    assert entries(world, "root", since="2999-01-01") == []
    # pages: n entries and a Link to the next, with the filters kept, until the last
    everything = entries(world, "root", repository="owner/*", n="1000")
    seen: list[dict[str, Any]] = []
    response = api(world, "root", repository="owner/*", n="3")
    while True:
        assert response.status_code == 200
        seen += response.json()["entries"]
        link = response.headers.get("link")
        if link is None:
            break
        assert link.endswith('>; rel="next"') and "repository=owner%2F%2A" in link
        response = httpx.get(world.url + link[1:link.index(">")],
                             headers={"Authorization": basic("root", SECRETS["root"])})
        assert len(response.json()["entries"]) <= 3
    assert seen == everything and len(everything) > 6
    assert [e["seq"] for e in seen] == sorted((e["seq"] for e in seen), reverse=True)
    for bad in ({"since": "yesterday"}, {"n": "-1"}, {"last": "x"}):
        refused = api(world, "root", **bad)
        assert (refused.status_code, codes(refused)) == (400, ["BAD_REQUEST"]), bad


def test_a_repository_admin_reads_only_the_repositories_they_administer(world: World) -> None:
    # admin holds the admin role on both of owner's repositories
    seen = {e["repository"] for e in entries(world, "admin", n="1000")}
    assert seen == {PUBLIC, PRIVATE}
    assert entries(world, "admin", repository="acme/*") == []
    # owner administers its namespace (and owns acme, whose repositories it administers too)
    assert {e["repository"] for e in entries(world, "owner", n="1000")} == {PUBLIC, PRIVATE, "acme/tools"}
    # root reads everything, logins (no repository) included
    assert "" in {e["repository"] for e in entries(world, "root", n="1000")}
    # a user administers only its own namespace (none of these holds a repository there): nothing to read,
    # even of the repositories it may read or write
    for who in ("reader", "writer", "other"):
        assert entries(world, who, n="1000") == [], who
    # robots administer nothing
    robot = httpx.get(f"{world.url}/admin/v1/audit", headers={"Authorization": basic("owner+ci", SECRETS["owner+ci"])})
    assert (robot.status_code, codes(robot)) == (403, ["DENIED"])
    assert api(world, None).status_code == 401


def test_the_cli_filters_pages_and_writes_json(world: World) -> None:
    server = world.server
    code, out, err = cli(server, "--repository", "owner/*", "--action", "manifest.push", "--json")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(e["repository"], e["action"], e["tag"]) for e in lines] == [(PRIVATE, "manifest.push", "v1"),
                                                                          (PUBLIC, "manifest.push", "v1")]
    assert set(lines[0]) == {"seq", "id", "time", "action", "result", "actor", "actor_kind", "address",
                             "user_agent", "request_id", "repository", "tag", "digest", "media_type", "size",
                             "detail"}
    assert lines[0]["time"].endswith("Z") and lines[0]["detail"] == {"tags": ["v1"]}
    # pages: --limit, and the --before of the next page on stderr
    seen: list[dict[str, Any]] = []
    args = ["--repository", "owner/*", "--json", "--limit", "4"]
    while True:
        code, out, err = cli(server, *args)
        assert code == 0
        seen += [json.loads(line) for line in out.splitlines()]
        if "--before" not in err:
            break
        args = [*args[:5], "--before", err.split("--before ")[1].strip()]
    code, out, _ = cli(server, "--repository", "owner/*", "--json", "--limit", "1000")
    assert seen == [json.loads(line) for line in out.splitlines()]
    code, out, _ = cli(server, "--actor", "writer", "--since", "1h", "--until", "2999-01-01T00:00:00")
    assert out.splitlines()[0].split() == ["SEQ", "TIME", "ACTION", "RESULT", "ACTOR", "ADDRESS", "REPOSITORY",
                                           "TARGET"]
    assert "manifest.push" in out and "acme/tools" in out and PUBLIC not in out
    code, _, err = cli(server, "--since", "last tuesday")
    assert code == 2 and "not a time" in err
    out, err_io = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err_io):
        assert main(["audit", "--data-dir", str(server.data_dir / "nothing-here")]) == 2
    assert "holds no registry" in err_io.getvalue() and not (server.data_dir / "nothing-here").exists()


def test_entries_are_newest_first_across_a_second(world: World) -> None:
    before = entries(world, "root", n="1")[0]["seq"]
    time.sleep(0.01)
    world.token_response("reader")
    assert entries(world, "root", n="1")[0]["seq"] > before


# changes of the access model


def admin_entries(data_dir: Path) -> list[dict[str, Any]]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["audit", "--data-dir", str(data_dir), "--action", "admin", "--json", "--limit", "1000"]) == 0
    return [json.loads(line) for line in reversed(out.getvalue().splitlines())]


def test_admin_cli_changes_are_entries_of_their_own_transaction(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with mock.patch.dict(os.environ, {"LOGNAME": "operator", "USER": "operator"}):
        ok(data, "user", "add", "root", "--superuser", "--password-stdin", stdin="root-password-9\n")
        ok(data, "user", "add", "bob", "--password-stdin", stdin="bob-password-9\n")
        ok(data, "user", "passwd", "bob", "--password-stdin", stdin="bob-password-10\n")
        ok(data, "org", "add", "acme", "--owner", "root")
        ok(data, "team", "add", "acme/devs")
        ok(data, "team", "member", "acme/devs", "bob")
        ok(data, "grant", "write", "acme/devs", "acme/*")
        ok(data, "repo", "public", "acme/site")
        ok(data, "robot", "add", "acme", "ci")
        ok(data, "user", "disable", "bob")
        ok(data, "revoke", "acme/devs", "acme/*")
        # refused part-way: the change and its entries are rolled back together
        assert in_process(data, "team", "member", "acme/devs", "root", "nobody")[0] == 1
        assert in_process(data, "user", "superuser", "root", "--remove")[0] == 1  # the last administrator
        assert in_process(data, "revoke", "bob", "acme/*")[0] == 1  # held nothing: nothing changed
        ok(data, "user", "delete", "bob")
    entries = admin_entries(data)
    assert [(e["detail"]["change"], e["repository"]) for e in entries] == [
        ("user.add", ""), ("user.add", ""), ("user.change", ""), ("org.add", ""), ("team.add", ""),
        ("team.member.add", ""), ("permission.grant", "acme/*"), ("repository.visibility", "acme/site"),
        ("robot.add", ""), ("user.change", ""), ("permission.revoke", "acme/*"), ("user.delete", ""),
    ]
    assert entries[0]["detail"] == {"change": "user.add", "name": "root", "superuser": True}
    assert entries[2]["detail"] == {"change": "user.change", "name": "bob", "fields": ["password"]}
    assert entries[6]["detail"] == {"change": "permission.grant", "grantee": "acme/devs", "role": "write"}
    assert entries[9]["detail"] == {"change": "user.change", "name": "bob", "fields": ["disabled"], "disabled": True}
    for entry in entries:
        assert (entry["actor"], entry["actor_kind"], entry["action"], entry["result"]) == (
            "operator", "admin-cli", "admin", "ok")
    with contextlib.closing(sqlite3.connect(data / "metadata.db")) as db:
        text = json.dumps(db.execute("SELECT * FROM events").fetchall())
    assert "root-password-9" not in text and "bob-password-10" not in text and "chr_" not in text


def test_admin_api_changes_are_entries_of_their_own_transaction(world: World) -> None:
    root = {"Authorization": basic("root", SECRETS["root"])}
    made = httpx.post(f"{world.url}/admin/v1/users", json={"name": "carol", "password": "carol-password-1"},
                      headers=root, timeout=30)
    assert made.status_code == 200, made.text
    granted = httpx.put(f"{world.url}/admin/v1/repositories/{PUBLIC}/permissions",
                        json={"grantee": "carol", "role": "read"}, headers=root, timeout=30)
    assert granted.status_code == 204
    # the last administrator: refused part-way, nothing changed and nothing recorded
    refused = httpx.patch(f"{world.url}/admin/v1/users/root", json={"superuser": False}, headers=root, timeout=30)
    assert (refused.status_code, codes(refused)) == (400, ["LAST_ADMINISTRATOR"])
    gone = httpx.delete(f"{world.url}/admin/v1/users/carol", headers=root, timeout=30)
    assert gone.status_code == 204
    changes = [e for e in entries(world, "root", action="admin", actor="root")]
    assert [e["detail"]["change"] for e in changes[:3]] == ["user.delete", "permission.grant", "user.add"]
    delete, grant, add = changes[:3]
    assert add["detail"] == {"change": "user.add", "name": "carol", "superuser": False}
    assert (add["request_id"], add["actor_kind"], add["address"]) == (made.headers["x-request-id"], "user",
                                                                      "127.0.0.1")
    assert (grant["repository"], grant["detail"]) == (PUBLIC, {"change": "permission.grant", "grantee": "carol",
                                                               "role": "read"})
    assert refused.headers["x-request-id"] not in {e["request_id"] for e in entries(world, "root", n="1000")
                                                   if e["action"] == "admin"}
    # the repository's admin reads the grant on it, not the users' changes
    seen = entries(world, "admin", action="admin", n="1000")
    assert grant["seq"] in {e["seq"] for e in seen} and add["seq"] not in {e["seq"] for e in seen}


def test_htpasswd_logins_are_recorded_once_per_check(tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    hashed = bcrypt.hashpw(b"basic-password", bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$")
    htpasswd.write_text(f"ci:{hashed}\n")
    # one worker: each worker remembers the logins it checked
    with cargohold(tmp_path, "--auth", "htpasswd", "--htpasswd", str(htpasswd), "--workers", "1",
                   env=FAST_ENV) as server:
        wrong = httpx.get(f"{server.url}/v2/", auth=("ci", "wrong-password"))
        assert wrong.status_code == 401
        for _ in range(3):  # checked once, then remembered for a minute: one entry
            assert httpx.get(f"{server.url}/v2/", auth=("ci", "basic-password")).status_code == 200
        code, out, err = cli(server, "--action", "login", "--json")
    logins = [json.loads(line) for line in reversed(out.splitlines())]
    assert [(e["actor"], e["result"]) for e in logins] == [("ci", "denied"), ("ci", "ok")]
    assert logins[0]["request_id"] == wrong.headers["x-request-id"]
    assert "wrong-password" not in out and "basic-password" not in out
