"""``cargohold migrate --from-sqlite DIR``: an embedded registry's metadata copied into PostgreSQL, checked,
served from there with the same blobs, and the copy safe to run again."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.postgres import PostgresCluster, query
from tests.support.servers import SRC, cargohold

MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push(url: str, repository: str, tag: str, layer: bytes) -> bytes:
    config = b'{"architecture":"amd64","os":"linux"}'
    with httpx.Client(base_url=url) as client:
        for blob in (config, layer):
            reply = client.post(f"/v2/{repository}/blobs/uploads/", params={"digest": _digest(blob)}, content=blob)
            assert reply.status_code == 201, reply.text
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": MEDIA_TYPE,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config),
                       "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _digest(layer),
                        "size": len(layer)}],
        }).encode()
        reply = client.put(f"/v2/{repository}/manifests/{tag}", content=manifest, headers={"Content-Type": MEDIA_TYPE})
        assert reply.status_code == 201, reply.text
    return manifest


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cargohold.cli.main", *args], capture_output=True, text=True,
                          input=stdin, timeout=120, env={**os.environ, "PYTHONPATH": str(SRC),
                                                         "CARGOHOLD_PASSWORD_COST": "4"})


def test_an_embedded_registry_moves_to_postgresql(postgres: PostgresCluster, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with cargohold(tmp_path) as embedded:
        first = push(embedded.url, "team/app", "v1", b"layer one")
    assert cli("admin", "--data-dir", str(data), "user", "add", "root", "--superuser", "--password-stdin",
               stdin="root-password\n").returncode == 0
    assert cli("admin", "--data-dir", str(data), "robot", "add", "root", "ci").returncode == 0
    url = postgres.fresh_database()

    copied = cli("migrate", "--data-dir", str(data), "--database-url", url, "--from-sqlite", str(data), "--json")
    assert copied.returncode == 0, copied.stderr
    rows = json.loads(copied.stdout)["copied"]
    assert rows["manifests"] == 1 and rows["tags"] == 1 and rows["blobs"] == 2 and rows["accounts"] == 2
    again = cli("migrate", "--data-dir", str(data), "--database-url", url, "--from-sqlite", str(data), "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["copied"] == rows  # safe to run again

    with cargohold(tmp_path, database_url=url) as moved:  # the same blobs, the metadata in PostgreSQL
        with httpx.Client(base_url=moved.url) as client:
            reply = client.get("/v2/team/app/manifests/v1", headers={"Accept": MEDIA_TYPE})
            assert reply.status_code == 200 and reply.content == first
            assert client.get(f"/v2/team/app/blobs/{_digest(b'layer one')}").content == b"layer one"
        second = push(moved.url, "team/other", "v2", b"layer two")  # new ids follow the copied ones
        with httpx.Client(base_url=moved.url) as client:
            assert client.get("/v2/_catalog").json() == {"repositories": ["team/app", "team/other"]}
            assert client.get("/v2/team/other/manifests/v2", headers={"Accept": MEDIA_TYPE}).content == second
    users = cli("admin", "--data-dir", str(data), "--database-url", url, "user", "list", "--json")
    assert [u["name"] for u in json.loads(users.stdout)] == ["root"], users.stderr


def test_the_copy_goes_into_postgresql_only(tmp_path: Path) -> None:
    done = cli("migrate", "--data-dir", str(tmp_path / "a"), "--from-sqlite", str(tmp_path / "b"))
    assert done.returncode == 2 and "--from-sqlite copies into PostgreSQL" in done.stderr


def test_a_copy_that_does_not_check_out_is_rolled_back(postgres: PostgresCluster, tmp_path: Path) -> None:
    """Into a database that holds another registry's rows: the counts differ, and nothing is left behind."""
    data = tmp_path / "data"
    with cargohold(tmp_path) as embedded:
        push(embedded.url, "team/app", "v1", b"layer one")
    url = postgres.fresh_database()
    (tmp_path / "other").mkdir()
    with cargohold(tmp_path / "other", database_url=url) as elsewhere:
        push(elsewhere.url, "else/where", "v1", b"another layer")
    done = cli("migrate", "--data-dir", str(data), "--database-url", url, "--from-sqlite", str(data))
    assert done.returncode == 1 and "rows in SQLite" in done.stderr, done.stderr
    with cargohold(tmp_path / "other", database_url=url) as elsewhere, httpx.Client(base_url=elsewhere.url) as c:
        assert c.get("/v2/_catalog").json() == {"repositories": ["else/where"]}


def test_every_table_is_copied_or_named_as_left_behind(postgres: PostgresCluster) -> None:
    """A migration that adds a table must say whether the copy takes it."""
    from cargohold.metadata import migrate
    from cargohold.metadata.copy import LEFT_BEHIND, TABLES

    url = postgres.fresh_database()
    migrate(url)
    tables = {row[0] for row in query(url, "SELECT table_name FROM information_schema.tables"
                                           " WHERE table_schema = current_schema()")}
    assert tables == set(TABLES) | set(LEFT_BEHIND)
