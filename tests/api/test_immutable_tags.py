"""Immutable tags on a token-auth server on each setup (SQLite + filesystem, PostgreSQL + S3): the rules
through the admin API (superusers, namespace owners inside their namespace), pushes and deletes refused
with DENIED naming the rule, the same digest pushed again, concurrent pushes of one protected tag, audit
entries."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest

from cargohold.cli.main import main
from tests.support.backends import setup_for
from tests.support.servers import CargoholdServer, cargohold

from .conftest import WORKERS
from .helpers import OCI_MANIFEST, codes, image_manifest, put_manifest, sha256

FAST_ENV = {"CARGOHOLD_PASSWORD_COST": "4"}
PASSWORDS = {"root": "root-password-1", "alice": "alice-password-1"}


def admin_cli(server_args: list[str], *args: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), mock.patch.dict(os.environ, FAST_ENV), \
            mock.patch("sys.stdin", io.StringIO(stdin)):
        code = main(["admin", *server_args, *args])
    return code, out.getvalue(), err.getvalue()


def basic(name: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{PASSWORDS[name]}".encode()).decode()}


@pytest.fixture(scope="module")
def server(backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[CargoholdServer]:
    tmp = tmp_path_factory.mktemp(f"immutable-{backend}")
    place = setup_for(backend, request)
    database = place.database_url
    where = ["--data-dir", str(tmp / "data"), *(["--database-url", database] if database else [])]
    for name in PASSWORDS:
        flags = ["--superuser"] if name == "root" else []
        assert admin_cli(where, "user", "add", name, *flags, "--password-stdin", stdin=PASSWORDS[name] + "\n")[0] == 0
    with cargohold(tmp, *WORKERS, "--auth", "token", env={**FAST_ENV, **place.env}, database_url=database) as running:
        yield running


def client(server: CargoholdServer, repository: str, who: str = "root") -> httpx.Client:
    token = httpx.get(f"{server.url}/auth/token", headers=basic(who), timeout=30, params={
        "service": "cargohold", "scope": f"repository:{repository}:pull,push,delete"}).json()["token"]
    return httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {token}"})


def admin(server: CargoholdServer, method: str, path: str, who: str = "root",
          params: dict[str, str] | None = None, **body: Any) -> httpx.Response:
    return httpx.request(method, f"{server.url}/admin/v1{path}", headers=basic(who), timeout=30, params=params,
                         json=body if body else None)


def add_rule(server: CargoholdServer, repository: str, tag: str, who: str = "root") -> dict[str, Any]:
    response = admin(server, "POST", "/immutable-tags", who, repository=repository, tag=tag)
    assert response.status_code == 200, response.text
    rule: dict[str, Any] = response.json()
    return rule


def image(c: httpx.Client, repo: str, seed: str) -> bytes:
    return image_manifest(c, repo, layers=1, seed=seed)


def test_a_protected_tag_is_pushed_again_but_never_moved_or_deleted(server: CargoholdServer) -> None:
    repo = "prod/app"
    rule = add_rule(server, "prod/*", "v*")
    assert (rule["repository"], rule["tag"], rule["created_by"]) == ("prod/*", "v*", "root")
    with client(server, repo) as c:
        first, second = image(c, repo, "first"), image(c, repo, "second")
        assert put_manifest(c, repo, "v1", first, OCI_MANIFEST).status_code == 201
        assert put_manifest(c, repo, "v1", first, OCI_MANIFEST).status_code == 201  # a CI retry

        moved = put_manifest(c, repo, "v1", second, OCI_MANIFEST)
        assert moved.status_code == 403 and codes(moved) == ["DENIED"]
        error = moved.json()["errors"][0]
        assert f"immutable tag rule {rule['id']} (repository 'prod/*', tag 'v*')" in error["message"]
        assert "'v1' of prod/app" in error["message"]
        assert error["detail"]["rule"]["id"] == rule["id"] and error["detail"]["digest"] == sha256(first)
        # by digest with tag parameters: one protected tag refuses the whole push
        by_digest = c.put(f"/v2/{repo}/manifests/{sha256(second)}", params=[("tag", "latest"), ("tag", "v1")],
                          content=second, headers={"Content-Type": OCI_MANIFEST})
        assert by_digest.status_code == 403 and codes(by_digest) == ["DENIED"]
        assert c.head(f"/v2/{repo}/manifests/latest").status_code == 404
        assert c.head(f"/v2/{repo}/manifests/v1").headers["docker-content-digest"] == sha256(first)

        # tags the rule does not match move freely; a new protected tag may be set once
        assert put_manifest(c, repo, "latest", first, OCI_MANIFEST).status_code == 201
        assert put_manifest(c, repo, "latest", second, OCI_MANIFEST).status_code == 201
        assert put_manifest(c, repo, "v2", second, OCI_MANIFEST).status_code == 201

        deleted = c.delete(f"/v2/{repo}/manifests/v1")
        assert deleted.status_code == 403 and "cannot be deleted" in deleted.json()["errors"][0]["message"]
        by_digest = c.delete(f"/v2/{repo}/manifests/{sha256(first)}")
        assert by_digest.status_code == 403 and codes(by_digest) == ["DENIED"]
        assert "'v1' of prod/app" in by_digest.json()["errors"][0]["message"]
        assert c.delete(f"/v2/{repo}/manifests/nothing").status_code == 404  # no such tag: as before
        assert c.delete(f"/v2/{repo}/manifests/latest").status_code == 202  # not protected

        assert admin(server, "DELETE", f"/immutable-tags/{rule['id']}").status_code == 204
        assert put_manifest(c, repo, "v1", second, OCI_MANIFEST).status_code == 201
        assert c.delete(f"/v2/{repo}/manifests/v1").status_code == 202

    changes = [(e["detail"]["change"], e["actor"], e["repository"], e["detail"]["id"], e["detail"]["tag"])
               for e in admin(server, "GET", "/audit", params={"action": "admin"}).json()["entries"]
               if e["detail"].get("change", "").startswith("immutable.") and e["detail"]["id"] == rule["id"]]
    assert changes == [("immutable.remove", "root", "prod/*", rule["id"], "v*"),
                       ("immutable.add", "root", "prod/*", rule["id"], "v*")]


def test_an_index_and_a_manifest_deleted_under_it(server: CargoholdServer) -> None:
    repo = "frozen/multi"
    add_rule(server, "frozen/multi", "release-[0-9]*")
    with client(server, repo) as c:
        child = image(c, repo, "child")
        assert put_manifest(c, repo, sha256(child), child, OCI_MANIFEST).status_code == 201
        index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": sha256(child), "size": len(child)}]}).encode()
        index_type = "application/vnd.oci.image.index.v1+json"
        assert put_manifest(c, repo, "release-1", index, index_type).status_code == 201
        assert put_manifest(c, repo, "release-1", child, OCI_MANIFEST).status_code == 403
        assert put_manifest(c, repo, "release-x", child, OCI_MANIFEST).status_code == 201  # [0-9] not matched
        assert put_manifest(c, repo, "release-x", index, index_type).status_code == 201


def test_concurrent_pushes_of_one_protected_tag(server: CargoholdServer) -> None:
    """Eight different images pushed at once to a new protected tag: exactly one wins, the others are DENIED."""
    repo = "race/app"
    add_rule(server, "race/app", "stable*")
    with client(server, repo) as c:
        raws = [image(c, repo, f"racer {i}") for i in range(8)]
        for attempt in range(3):
            tag = f"stable{attempt}"

            def push(raw: bytes, tag: str = tag) -> int:
                return put_manifest(c, repo, tag, raw, OCI_MANIFEST).status_code

            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(push, raws))
            assert sorted(statuses) == [201] + [403] * 7, statuses
            winner = raws[statuses.index(201)]
            assert c.head(f"/v2/{repo}/manifests/{tag}").headers["docker-content-digest"] == sha256(winner)
            assert push(winner) == 201


def test_who_manages_rules(server: CargoholdServer) -> None:
    """Superusers: every rule; a namespace's owner: the rules inside it, as Harbor's project admins."""
    mine = add_rule(server, "alice/*", "v*", who="alice")
    assert mine["created_by"] == "alice"
    assert add_rule(server, "alice/app", "[0-9]*", who="alice")["repository"] == "alice/app"
    for pattern in ("*", "alice*", "bob/*", "*/app"):
        refused = admin(server, "POST", "/immutable-tags", "alice", repository=pattern, tag="v*")
        assert refused.status_code == 403 and codes(refused) == ["DENIED"], pattern
    root_rule = add_rule(server, "alice/*", "latest")
    other = add_rule(server, "elsewhere/*", "*")
    listed = admin(server, "GET", "/immutable-tags", "alice").json()
    assert {r["id"] for r in listed} >= {mine["id"], root_rule["id"]} and other["id"] not in {r["id"] for r in listed}
    assert other["id"] in {r["id"] for r in admin(server, "GET", "/immutable-tags").json()}
    assert admin(server, "DELETE", f"/immutable-tags/{other['id']}", "alice").status_code == 403
    assert admin(server, "DELETE", f"/immutable-tags/{root_rule['id']}", "alice").status_code == 204
    for rule in (mine, other):
        assert admin(server, "DELETE", f"/immutable-tags/{rule['id']}").status_code == 204


BAD_RULES: list[tuple[dict[str, Any], int, str, str]] = [
    ({"repository": "", "tag": "v*"}, 400, "IMMUTABLE_RULE_INVALID", "repository pattern ''"),
    ({"repository": "Prod/*", "tag": "v*"}, 400, "IMMUTABLE_RULE_INVALID", "repository pattern 'Prod/*'"),
    ({"repository": "prod/*", "tag": "v 1"}, 400, "IMMUTABLE_RULE_INVALID", "tag pattern 'v 1'"),
    ({"repository": "prod/[ab", "tag": "v*"}, 400, "IMMUTABLE_RULE_INVALID", "unbalanced"),
    ({"repository": "prod/*", "tag": "x" * 256}, 400, "IMMUTABLE_RULE_INVALID", "1 to 255 characters"),
    ({"repository": "prod/*"}, 400, "IMMUTABLE_RULE_INVALID", "repository and tag are required"),
    ({"repository": 7, "tag": "v*"}, 400, "IMMUTABLE_RULE_INVALID", "repository and tag are required"),
]


@pytest.mark.parametrize(("body", "status", "code", "message"), BAD_RULES)
def test_bad_rules_are_refused(server: CargoholdServer, body: dict[str, Any], status: int, code: str,
                               message: str) -> None:
    response = admin(server, "POST", "/immutable-tags", **body)
    assert (response.status_code, codes(response)) == (status, [code]), response.text
    assert message in response.json()["errors"][0]["message"]


def test_duplicate_and_unknown_rules(server: CargoholdServer) -> None:
    rule = add_rule(server, "dup/*", "v*")
    again = admin(server, "POST", "/immutable-tags", repository="dup/*", tag="v*")
    assert (again.status_code, codes(again)) == (409, ["IMMUTABLE_RULE_EXISTS"])
    assert admin(server, "DELETE", f"/immutable-tags/{rule['id']}").status_code == 204
    gone = admin(server, "DELETE", f"/immutable-tags/{rule['id']}")
    assert (gone.status_code, codes(gone)) == (404, ["IMMUTABLE_RULE_UNKNOWN"])
    assert f"no immutable tag rule {rule['id']}" in gone.json()["errors"][0]["message"]
    assert admin(server, "DELETE", "/immutable-tags/abc").status_code == 404  # no such route
    assert admin(server, "GET", "/immutable-tags", who="alice").status_code == 200
    assert httpx.get(f"{server.url}/admin/v1/immutable-tags", timeout=30).status_code == 401


def test_rules_through_the_admin_cli_bind_the_running_server(server: CargoholdServer, tmp_path: Path) -> None:
    where = ["--data-dir", str(server.data_dir),
             *(["--database-url", server.database_url] if server.database_url else [])]
    code, out, err = admin_cli(where, "immutable", "add", "cli/*", "1.*", "--json")
    assert code == 0, err
    rule = json.loads(out)
    repo = "cli/app"
    with client(server, repo) as c:
        first, second = image(c, repo, "first"), image(c, repo, "second")
        assert put_manifest(c, repo, "1.0", first, OCI_MANIFEST).status_code == 201
        refused = put_manifest(c, repo, "1.0", second, OCI_MANIFEST)
        assert refused.status_code == 403 and f"rule {rule['id']}" in refused.json()["errors"][0]["message"]
        assert admin_cli(where, "immutable", "remove", str(rule["id"]))[0] == 0
        assert put_manifest(c, repo, "1.0", second, OCI_MANIFEST).status_code == 201
