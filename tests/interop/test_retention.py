"""Retention with real clients, on each metadata backend: skopeo pushes an index, images and a docker-format
image, pulls one; the policies keep the index (and so its children), the most recently pulled tag and
nothing else; the dry run lists exactly what the real run deletes, and skopeo still copies what was kept."""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cargohold.cli.main import main
from tests.support.postgres import BACKENDS
from tests.support.servers import CargoholdServer, cargohold

from .tools import BuiltImages, MakeClients, OciLayout, requires_skopeo

pytestmark = requires_skopeo


@pytest.fixture(params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CargoholdServer]:
    database = request.getfixturevalue("postgres").fresh_database() if request.param == "postgres" else None
    env = {"CARGOHOLD_SERVER_PULL_TIMES_FLUSH_SECONDS": "0.2"}
    with cargohold(tmp_path, "--workers", "1", env=env, database_url=database) as running:
        yield running


def retention(server: CargoholdServer, config: Path, *flags: str) -> dict[str, Any]:
    where = ["--data-dir", str(server.data_dir), *(["--database-url", server.database_url]
                                                   if server.database_url else [])]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["retention", *where, "--config", str(config), "--json", *flags])
    assert code == 0, err.getvalue()
    report: dict[str, Any] = json.loads(out.getvalue())
    return report


def test_skopeo_pushes_pulls_and_retention_keeps_the_index_and_the_pulled_tag(
    make_clients: MakeClients, images: BuiltImages, server: CargoholdServer, tmp_path: Path,
) -> None:
    skopeo = make_clients("clients", [server.host]).skopeo
    repo = f"docker://{server.host}/team/app"
    skopeo.copy(f"oci:{images.oci.path}:multi", f"{repo}:multi", "--all")
    skopeo.copy(f"oci:{images.oci.path}:small", f"{repo}:small")
    skopeo.copy(f"oci:{images.oci.path}:base", f"{repo}:base")
    skopeo.copy(f"dir:{images.docker_dir}", f"{repo}:docker")
    docker_digest = skopeo.inspect(f"{repo}:docker")["Digest"]  # a GET of the manifest: a pull
    time.sleep(1.1)  # pull times are in seconds
    skopeo.copy(f"{repo}:small", f"oci:{tmp_path / 'pulled'}:small")  # small is the tag pulled last
    base_digest = images.oci.descriptor("base")["digest"]

    config = tmp_path / "retention.yml"
    config.write_text(yaml.safe_dump({"retention": {"delay": "0s", "policies": [{
        "repositories": ["team/*"],
        "keep_tags": [{"patterns": ["^multi$"]}, {"most_recently_pulled_count": 1}],
    }]}}))
    time.sleep(1.5)  # the pull times are written
    dry = retention(server, config, "--dry-run")
    real = retention(server, config)
    assert real["deleted"] == dry["would_delete"] and real["skipped"] == []
    assert [(d["kind"], d["target"]) for d in real["deleted"]] == [
        ("tag", "base"), ("tag", "docker"), ("manifest", docker_digest)]  # base's manifest is a child of multi

    assert sorted(skopeo.list_tags(repo)) == ["multi", "small"]
    assert retention(server, config, "--dry-run")["would_delete"] == []
    skopeo.copy(f"{repo}:multi", f"oci:{tmp_path / 'multi'}:multi", "--all")  # the children are still there
    assert OciLayout(tmp_path / "multi").descriptor("multi")["digest"] == images.oci.descriptor("multi")["digest"]
    assert skopeo.inspect_raw(f"{repo}@{base_digest}")
