"""Immutable tags with real clients, on each metadata backend: skopeo copies the same image to a protected
tag twice (a CI retry), is refused another image with a message that names the rule, and cannot delete it."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.cli.main import main
from tests.support.postgres import BACKENDS
from tests.support.servers import CargoholdServer, cargohold

from .tools import BuiltImages, MakeClients, requires_skopeo

pytestmark = requires_skopeo


@pytest.fixture(params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CargoholdServer]:
    database = request.getfixturevalue("postgres").fresh_database() if request.param == "postgres" else None
    with cargohold(tmp_path, database_url=database) as running:
        yield running


def add_rule(server: CargoholdServer, repository: str, tag: str) -> int:
    where = ["--data-dir", str(server.data_dir), *(["--database-url", server.database_url]
                                                   if server.database_url else [])]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["admin", *where, "immutable", "add", repository, tag, "--json"]) == 0
    rule_id: int = json.loads(out.getvalue())["id"]
    return rule_id


def test_skopeo_copies_the_same_image_again_and_is_refused_another(
    make_clients: MakeClients, images: BuiltImages, server: CargoholdServer,
) -> None:
    skopeo = make_clients("clients", [server.host]).skopeo
    rule = add_rule(server, "releases/*", "v*")
    target = f"docker://{server.host}/releases/app:v1"
    skopeo.copy(f"oci:{images.oci.path}:small", target)
    skopeo.copy(f"oci:{images.oci.path}:small", target)  # the same digest again: a retried CI job
    assert skopeo.inspect(target)["Digest"] == images.oci.descriptor("small")["digest"]

    failure = skopeo.fails("copy", "--dest-tls-verify=false", f"oci:{images.oci.path}:base", target)
    assert "denied" in failure.stderr.lower(), failure.stderr
    assert f"protected by immutable tag rule {rule} (repository 'releases/*', tag 'v*')" in failure.stderr
    assert skopeo.inspect(target)["Digest"] == images.oci.descriptor("small")["digest"]

    failure = skopeo.fails("delete", "--tls-verify=false", target)
    assert f"immutable tag rule {rule}" in failure.stderr, failure.stderr
    skopeo.copy(f"oci:{images.oci.path}:base", f"docker://{server.host}/releases/app:latest")  # not protected


def cargohold_client(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, err.getvalue()


def test_cargohold_client_cannot_retag_or_delete_a_protected_tag(
    make_clients: MakeClients, images: BuiltImages, server: CargoholdServer,
) -> None:
    skopeo = make_clients("clients", [server.host]).skopeo
    rule = add_rule(server, "releases/app", "stable")
    repo = f"{server.host}/releases/app"
    skopeo.copy(f"oci:{images.oci.path}:small", f"docker://{repo}:stable")
    skopeo.copy(f"oci:{images.oci.path}:base", f"docker://{repo}:base")
    assert cargohold_client("tag", f"{repo}:stable", "stable")[0] == 0  # the digest it names already
    code, err = cargohold_client("tag", f"{repo}:base", "stable")
    assert code != 0 and f"protected by immutable tag rule {rule}" in err, err
    code, err = cargohold_client("delete", f"{repo}:stable")
    assert code != 0 and f"immutable tag rule {rule}" in err and "cannot be deleted" in err, err
    assert skopeo.inspect(f"docker://{repo}:stable")["Digest"] == images.oci.descriptor("small")["digest"]


def test_schema1_pushed_again_is_the_same_digest(
    make_clients: MakeClients, images: BuiltImages, server: CargoholdServer,
) -> None:
    """skopeo signs a schema 1 manifest anew on every push; its digest is the payload's, so a retry passes."""
    skopeo = make_clients("clients", [server.host]).skopeo
    rule = add_rule(server, "legacy/*", "*")
    target = f"docker://{server.host}/legacy/app:v1"
    for _ in range(2):
        skopeo.copy(f"oci:{images.oci.path}:small", target, "--format", "v2s1")
    failure = skopeo.fails("copy", "--dest-tls-verify=false", "--format", "v2s1", f"oci:{images.oci.path}:base",
                           target)
    assert f"protected by immutable tag rule {rule}" in failure.stderr, failure.stderr
