"""Administration: the ``cargohold admin`` commands on a data directory, and the HTTP admin API."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path
from unittest import mock

import httpx

from cargohold.auth.passwords import hash_password
from cargohold.cli.main import main
from tests.api.helpers import codes

from .world import FAST_ENV, PRIVATE, SECRETS, World, admin_cli, basic, decode_claims

# the command line


def in_process(data: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    """``cargohold admin`` run in this process (an interpreter start per command would dominate the run)."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin or "")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                mock.patch.dict(os.environ, FAST_ENV):
            code = main(["admin", "--data-dir", str(data), *args])
    finally:
        sys.stdin = saved
    return code, out.getvalue(), err.getvalue()


def ok(data: Path, *args: str, stdin: str | None = None) -> str:
    code, out, err = in_process(data, *args, stdin=stdin)
    assert code == 0, err
    return out


def test_cli_as_a_command(tmp_path: Path) -> None:
    result = admin_cli(tmp_path / "data", "user", "add", "alice", "--password-stdin", stdin="alice-password\n")
    assert (result.returncode, result.stdout) == (0, "user alice created\n")
    result = admin_cli(tmp_path / "data", "user", "add", "alice", "--password-stdin", stdin="alice-password\n")
    assert (result.returncode, result.stderr) == (1, "cargohold admin: the name 'alice' is taken\n")


def test_cli_users(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert "created (superuser)" in ok(data, "user", "add", "root", "--superuser", "--password-stdin",
                                       stdin="root-password\n")
    ok(data, "user", "add", "alice", "--password-stdin", stdin="alice-password\n")
    users = json.loads(ok(data, "user", "list", "--json"))
    assert [(u["name"], u["superuser"], u["disabled"]) for u in users] == [("alice", False, False),
                                                                             ("root", True, False)]
    ok(data, "user", "passwd", "alice", "--password-stdin", stdin="alice-password-2\n")
    ok(data, "user", "disable", "alice")
    assert json.loads(ok(data, "user", "list", "--json"))[0]["disabled"] is True
    ok(data, "user", "enable", "alice")
    ok(data, "user", "superuser", "alice")
    ok(data, "user", "superuser", "root", "--remove")
    ok(data, "user", "delete", "root")
    assert [u["name"] for u in json.loads(ok(data, "user", "list", "--json"))] == ["alice"]


REFUSALS: list[tuple[tuple[str, ...], str | None, str]] = [
    (("user", "add", "bob", "--password-stdin"), "short\n", "at least 8"),
    (("user", "add", "Bob", "--password-stdin"), "long-enough-1\n", "not a valid user"),
    (("user", "add", "alice", "--password-stdin"), "long-enough-1\n", "taken"),
    (("user", "disable", "alice"), None, "last enabled administrator"),
    (("user", "passwd", "nobody", "--password-stdin"), "long-enough-1\n", "no user named"),
    (("robot", "add", "nobody", "ci"), None, "no user or organization"),
    (("grant", "write", "nobody", "alice/app"), None, "no user or robot"),
    (("team", "add", "alice/devs"), None, "no organization"),
    (("revoke", "alice", "alice/app"), None, "held no grant"),
    (("token-key",), None, "cannot load the token signing key"),
]


def test_cli_refusals(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ok(data, "user", "add", "alice", "--superuser", "--password-stdin", stdin="alice-password\n")
    for args, stdin, message in REFUSALS:
        code, _, err = in_process(data, *args, stdin=stdin)
        assert code == 1, args
        assert message in err, (args, err)


def test_cli_a_change_refused_part_way_changes_nothing(tmp_path: Path) -> None:
    """Adding several members is one change: one unknown name and none is added."""
    data = tmp_path / "data"
    ok(data, "user", "add", "alice", "--password-stdin", stdin="alice-password\n")
    ok(data, "user", "add", "bob", "--password-stdin", stdin="bob-password\n")
    ok(data, "org", "add", "acme", "--owner", "alice")
    code, out, err = in_process(data, "team", "member", "acme/owners", "bob", "nobody")
    assert (code, out, err) == (1, "", "cargohold admin: no user or robot named 'nobody'\n")
    assert json.loads(ok(data, "team", "list", "acme", "--json")) == [{"team": "acme/owners", "members": "alice"}]


def test_cli_robots_organizations_teams_grants(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ok(data, "user", "add", "alice", "--password-stdin", stdin="alice-password\n")
    ok(data, "user", "add", "bob", "--password-stdin", stdin="bob-password\n")
    token = ok(data, "robot", "add", "alice", "ci").strip()
    assert token.startswith("chr_") and len(token) > 40
    rotated = ok(data, "robot", "rotate", "alice+ci").strip()
    assert rotated != token
    assert [r["name"] for r in json.loads(ok(data, "robot", "list", "alice", "--json"))] == ["alice+ci"]
    ok(data, "org", "add", "acme", "--owner", "alice")
    ok(data, "team", "add", "acme/devs")
    ok(data, "team", "member", "acme/devs", "bob", "alice+ci")
    teams = json.loads(ok(data, "team", "list", "acme", "--json"))
    assert teams == [{"team": "acme/devs", "members": "alice+ci bob"}, {"team": "acme/owners", "members": "alice"}]
    ok(data, "grant", "write", "acme/devs", "acme/*")
    ok(data, "grant", "read", "bob", "alice/app")
    ok(data, "repo", "public", "alice/app")
    who = json.loads(ok(data, "who-can", "alice/app", "--json"))
    assert who == [
        {"who": "alice", "role": "admin", "actions": "delete,pull,push", "via": "owner of alice"},
        {"who": "anonymous", "role": "read", "actions": "pull", "via": "public"},
        {"who": "bob", "role": "read", "actions": "pull", "via": "grant"},
    ]
    table = ok(data, "who-can", "acme/tools")
    assert table.splitlines()[0].split() == ["WHO", "ROLE", "ACTIONS", "VIA"]
    assert "acme/devs  write" in table and "grant on acme/*" in table
    ok(data, "revoke", "bob", "alice/app")
    ok(data, "repo", "private", "alice/app")
    assert [h["who"] for h in json.loads(ok(data, "who-can", "alice/app", "--json"))] == ["alice"]
    ok(data, "team", "member", "acme/devs", "bob", "--remove")
    ok(data, "team", "delete", "acme/devs")
    ok(data, "robot", "delete", "alice+ci")
    ok(data, "org", "delete", "acme")
    assert json.loads(ok(data, "org", "list", "--json")) == []


def test_cli_token_key_after_the_server_made_it(world: World) -> None:
    info = json.loads(ok(world.server.data_dir, *world.database_options(), "token-key", "--json"))
    keys = httpx.get(f"{world.url}/auth/jwks").json()["keys"]
    assert info["kid"] == keys[0]["kid"] and info["algorithm"] == "ES256"
    assert Path(info["certificate"]).read_text().startswith("-----BEGIN CERTIFICATE-----")


# the HTTP API


def api(world: World, who: str, method: str, path: str, **kw: object) -> httpx.Response:
    return httpx.request(method, f"{world.url}/admin/v1{path}", headers={"Authorization": basic(who, SECRETS[who])},
                         **kw)  # type: ignore[arg-type]


def test_api_needs_an_administrator(world: World) -> None:
    response = httpx.get(f"{world.url}/admin/v1/users")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic ")
    response = httpx.get(f"{world.url}/admin/v1/users", headers={"Authorization": basic("root", "wrong-password")})
    assert response.status_code == 401
    assert api(world, "owner+ci", "GET", "/whoami").status_code == 403  # robots do not administer
    assert codes(api(world, "other", "GET", "/users")) == ["DENIED"]
    me = api(world, "other", "GET", "/whoami").json()
    assert (me["name"], me["superuser"], me["teams"]) == ("other", False, [])
    assert [u["name"] for u in api(world, "root", "GET", "/users").json()][:2] == ["admin", "gone"]


def test_api_accepts_the_token_services_bearer_tokens(world: World) -> None:
    token = world.token("root")
    response = httpx.get(f"{world.url}/admin/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert response.json()["name"] == "root"
    response = httpx.get(f"{world.url}/admin/v1/whoami", headers={"Authorization": f"Bearer {token}x"})
    assert response.status_code == 401


def test_api_users_and_self_service(world: World) -> None:
    created = api(world, "root", "POST", "/users", json={"name": "apiuser", "password": "api-password-1"})
    assert created.status_code == 200, created.text
    assert created.json()["name"] == "apiuser"
    again = api(world, "root", "POST", "/users", json={"name": "apiuser", "password": "api-password-1"})
    assert again.status_code == 409 and codes(again) == ["ACCOUNT_EXISTS"]
    short = api(world, "root", "POST", "/users", json={"name": "shorty", "password": "short"})
    assert short.status_code == 400 and codes(short) == ["PASSWORD_REJECTED"]
    SECRETS["apiuser"] = "api-password-1"
    try:
        changed = api(world, "apiuser", "PATCH", "/users/apiuser", json={"password": "api-password-2"})
        assert changed.status_code == 200
        SECRETS["apiuser"] = "api-password-2"
        assert api(world, "apiuser", "PATCH", "/users/apiuser", json={"superuser": True}).status_code == 403
        assert api(world, "apiuser", "PATCH", "/users/other", json={"password": "x" * 10}).status_code == 403
        assert api(world, "root", "PATCH", "/users/apiuser", json={"disabled": True}).json()["disabled"] is True
        assert world.token_response("apiuser").status_code == 401
    finally:
        assert api(world, "root", "DELETE", "/users/apiuser").status_code == 204
        SECRETS.pop("apiuser")
    assert api(world, "root", "DELETE", "/users/apiuser").status_code == 404


def test_api_a_change_refused_part_way_changes_nothing(world: World) -> None:
    """A PATCH is one change: the last administrator keeps both its superuser right and its password."""
    refused = api(world, "root", "PATCH", "/users/root", json={"password": "root-password-2", "superuser": False})
    try:
        assert refused.status_code == 400 and codes(refused) == ["LAST_ADMINISTRATOR"]
        assert world.token_response("root").status_code == 200  # the password it had
        assert api(world, "root", "GET", "/whoami").json()["superuser"] is True
    finally:
        if world.token_response("root").status_code != 200:  # leave the shared world as it was
            store = world.store()
            store.set_secret("root", hash_password(SECRETS["root"], 4))
            store.close()


def test_api_robots(world: World) -> None:
    made = api(world, "owner", "POST", "/robots", json={"name": "deploy"})
    assert made.status_code == 200, made.text
    token = made.json()["token"]
    assert made.json()["name"] == "owner+deploy"
    assert api(world, "other", "POST", "/robots", json={"owner": "owner", "name": "x"}).status_code == 403
    assert "owner+deploy" in [r["name"] for r in api(world, "owner", "GET", "/robots").json()]
    login = httpx.get(f"{world.url}/auth/token", headers={"Authorization": basic("owner+deploy", token)})
    assert login.status_code == 200
    rotated = api(world, "owner", "POST", "/robots/owner+deploy/rotate").json()["token"]
    assert httpx.get(f"{world.url}/auth/token", headers={"Authorization": basic("owner+deploy", token)}).status_code \
        == 401
    assert httpx.get(f"{world.url}/auth/token",
                     headers={"Authorization": basic("owner+deploy", rotated)}).status_code == 200
    assert api(world, "owner", "DELETE", "/robots/owner+deploy").status_code == 204


def test_api_organizations_teams_grants_visibility(world: World) -> None:
    assert api(world, "other", "POST", "/organizations", json={"name": "otherorg"}).status_code == 200
    try:
        assert api(world, "other", "POST", "/organizations/otherorg/teams", json={"name": "ci"}).status_code == 200
        assert api(world, "other", "PUT", "/organizations/otherorg/teams/ci/members/reader").status_code == 204
        assert api(world, "owner", "PUT", "/organizations/otherorg/teams/ci/members/owner").status_code == 403
        teams = api(world, "other", "GET", "/organizations/otherorg/teams").json()
        assert teams == [{"name": "ci", "members": ["reader"]}, {"name": "owners", "members": ["other"]}]
        granted = api(world, "other", "PUT", "/repositories/otherorg/*/permissions",
                      json={"grantee": "otherorg/ci", "role": "write"})
        assert granted.status_code == 204, granted.text
        claims = decode_claims(world.token("reader", "repository:otherorg/app:push"))
        assert claims["access"] == [{"type": "repository", "name": "otherorg/app", "actions": ["push"]}]
        who = api(world, "other", "GET", "/repositories/otherorg/app/permissions").json()
        assert {"who": "otherorg/ci", "role": "write", "via": "grant on otherorg/*"} in who
        assert api(world, "other", "PUT", "/repositories/otherorg/app/visibility",
                   json={"public": True}).status_code == 200
        assert httpx.get(f"{world.url}/v2/otherorg/app/tags/list").status_code == 404  # public: no challenge
        revoked = api(world, "other", "DELETE", "/repositories/otherorg/*/permissions",
                      params={"grantee": "otherorg/ci"})
        assert revoked.status_code == 204
    finally:
        assert api(world, "other", "DELETE", "/organizations/otherorg").status_code == 204


def test_api_repository_permissions_need_admin_on_the_repository(world: World) -> None:
    assert api(world, "writer", "GET", f"/repositories/{PRIVATE}/permissions").status_code == 403
    who = api(world, "admin", "GET", f"/repositories/{PRIVATE}/permissions").json()
    assert {"who": "owner+ci", "role": "write", "via": "grant"} in who
    assert api(world, "writer", "PUT", f"/repositories/{PRIVATE}/visibility", json={"public": True}).status_code \
        == 403
    assert api(world, "root", "GET", "/nothing-here").status_code == 404
    assert api(world, "root", "POST", "/whoami").status_code == 405
