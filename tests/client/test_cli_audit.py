"""Every client command takes --json and prints JSON with it; bad input gives one error line, no traceback."""

from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path

import pytest

from cargohold.cli.main import COMMAND_MODULES, build_parser, program
from cargohold.digest import Digest

from .cli_support import isolated  # noqa: F401 - isolated is an autouse fixture
from .conftest import RunningRegistry
from .images import build_image, write_layout

#: the client's command modules: every ``client_*`` module (new ones included) and the blob cache's
CLIENT_MODULES = tuple(m for m in COMMAND_MODULES if m.startswith("cargohold.cli.client_")) + (
    "cargohold.cli.cache",
)

KNOWN = {
    "catalog", "tags", "ls", "inspect", "manifest", "config", "digest", "check",
    "copy", "cp", "pull", "push", "sync", "tag", "delete", "blob get", "blob put",
    "login", "logout", "cache info", "cache prune",
}  # fmt: skip


def commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> dict[str, argparse.ArgumentParser]:
    """Each runnable command under ``parser`` (``blob get``, aliases included), by its words."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(commands(sub, (*prefix, name)))
    if not found and parser.get_default("func") is not None:
        found[" ".join(prefix)] = parser
    return found


def test_every_client_command_takes_json() -> None:
    found = commands(build_parser(CLIENT_MODULES))
    assert set(found) >= KNOWN  # the walk sees every command (and any added since)
    assert [name for name, parser in sorted(found.items()) if "--json" not in parser._option_string_actions] == []


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``cargohold ARGV`` as installed: a bug ends it with code 70 and a line, a usage error with 2."""
    try:
        code = program(list(argv))
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def json_of(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    code, out, err = cli(capsys, *argv)
    assert code == 0, err
    return json.loads(out)


def test_every_client_command_prints_json(
    registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = build_image((1000,))
    write_layout(tmp_path / "src", image, "v1")
    repo = registry.ref(registry.repo("json")).rpartition(":")[0]
    ref = f"{repo}:v1"
    layer = Digest.parse(json.loads(image.manifest)["layers"][0]["digest"])
    (tmp_path / "blob.bin").write_bytes(b"a blob")
    documents = {
        "push": json_of(capsys, "push", "--json", f"oci:{tmp_path / 'src'}:v1", ref),
        "copy": json_of(capsys, "copy", "--json", ref, f"{repo}:v2"),
        "cp": json_of(capsys, "cp", "--json", f"oci:{tmp_path / 'src'}:v1", f"docker-archive:{tmp_path / 'a.tar'}"),
        "pull": json_of(capsys, "pull", "--json", ref, f"oci:{tmp_path / 'pulled'}"),
        "catalog": json_of(capsys, "catalog", "--json", registry.host),
        "tags": json_of(capsys, "tags", "--json", repo),
        "ls": json_of(capsys, "ls", "--json", "-l", repo),
        "inspect": json_of(capsys, "inspect", "--json", ref),
        "manifest": json_of(capsys, "manifest", "--json", ref),  # the manifest is JSON already
        "config": json_of(capsys, "config", "--json", ref),  # so is the config
        "digest": json_of(capsys, "digest", "--json", ref),
        "check": json_of(capsys, "check", "--json", ref),
        "sync": json_of(capsys, "sync", "--json", repo, repo.replace("/json/", "/json-sync/")),
        "tag": json_of(capsys, "tag", "--json", ref, "v3"),
        "blob put": json_of(capsys, "blob", "put", "--json", repo, str(tmp_path / "blob.bin")),
        "blob get": json_of(capsys, "blob", "get", "--json", f"{repo}@{layer}", "-o", str(tmp_path / "layer")),
        "cache info": json_of(capsys, "cache", "info", "--json"),
        "cache prune": json_of(capsys, "cache", "prune", "--json"),
    }
    documents["delete"] = json_of(capsys, "delete", "--json", f"{repo}:v3")
    output = str(tmp_path / "layer")
    assert documents["blob get"] == {"digest": str(layer), "size": len(image.blobs[layer]), "output": output}
    assert (tmp_path / "layer").read_bytes() == image.blobs[layer]
    assert documents["copy"]["digest"] == documents["digest"]["digest"] == str(image.digest)  # type: ignore[index]
    assert documents["manifest"] == json.loads(image.manifest)


def test_login_and_logout_print_json(
    auth_registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host, user, password = auth_registry.host, auth_registry.username or "", auth_registry.password or ""
    assert json_of(capsys, "login", "--json", host, "-u", user, "-p", password) == {
        "registry": host,
        "username": user,
        "loggedIn": True,
    }
    assert host in json.loads((tmp_path / "docker" / "config.json").read_text())["auths"]
    assert json_of(capsys, "logout", "--json", host) == {"registry": host, "removed": True}
    code, out, err = cli(capsys, "logout", "--json", host)
    assert code == 1 and json.loads(out) == {"registry": host, "removed": False}
    assert err == f"Not logged in to {host}\n"
    code, out, err = cli(capsys, "login", "--json", host, "-u", user, "-p", "wrong")
    assert code == 1 and out == "" and err.count("\n") == 1 and "UNAUTHORIZED" in err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["tags", "--filter", "(", "{repo}"], ["--filter", "invalid regular expression '('"]),
        (["ls", "--details", "--filter", "[", "{repo}"], ["invalid regular expression '['"]),
        (["catalog", "-r", "(", "{host}"], ["--repository-filter", "invalid regular expression"]),
        (["catalog", "-n", "*", "{host}"], ["--namespace-filter", "invalid regular expression"]),
        (["sync", "--tags", "+", "{repo}", "{repo}-copy"], ["--tags", "invalid regular expression"]),
        (["catalog", "{repo}"], ["catalog lists a registry (HOST[:PORT]), not a repository"]),
        (["login", "{host}", "-u", "someone", "-p", ""], ["a password is required"]),
        (["login", "{host}", "-u", "someone", "--password-stdin"], ["a password is required"]),
        (["inspect", "{repo}:missing"], ["MANIFEST_UNKNOWN"]),
        (["digest", "{repo}:missing"], ["MANIFEST_UNKNOWN"]),
        (["check", "{repo}:missing"], ["MANIFEST_UNKNOWN"]),
        (["tag", "{repo}:missing", "new"], ["MANIFEST_UNKNOWN"]),
        (["pull", "{repo}:missing", "oci:{t}/out"], ["MANIFEST_UNKNOWN"]),
        (["pull", "{repo}:v1", "{repo}:v2"], ["pull writes to oci:"]),
        (["pull", "{repo}:v1", "docker-archive:{t}/nowhere/a.tar"], ["nowhere: no such directory"]),
        (["push", "oci:{t}/nowhere:v1", "{repo}:x"], ["nowhere", "not an OCI image layout"]),
        (["push", "oci:{t}/src:nope", "{repo}:x"], ["no image named 'nope'"]),
        (["push", "docker-archive:{t}/none.tar", "{repo}:x"], ["none.tar"]),
        (["cp", "Upper/Case:1", "oci:{t}/out"], ["repository names are lowercase"]),
        (["cp", "--platform", "linux", "oci:{t}/src:v1", "oci:{t}/out"], ["invalid platform 'linux'"]),
        (["cp", "--platform", "linux/arm64", "oci:{t}/src:v1", "{repo}:x"], ["not linux/arm64"]),
        (["tags", "--creds", "nocolon", "{repo}"], ["--creds must be USER:PASSWORD"]),
        (["tags", "--ca-cert", "{t}/none.pem", "{repo}"], ["--ca-cert", "none.pem: no such file"]),
        (["digest", "--cert", "{t}/none.pem", "--key", "{t}/k.pem", "{repo}:v1"], ["--cert", "none.pem: no such file"]),
        (["blob", "get", "{repo}@sha256:" + "0" * 64, "-o", "{t}/nowhere/blob"], ["nowhere: no such directory"]),
        (["blob", "put", "{repo}", "{t}/nope.bin"], ["nope.bin"]),
        (["blob", "get", "{repo}", "sha256:zz"], ["sha256:zz"]),
        (["blob", "get", "--json", "{repo}@sha256:" + "0" * 64], ["--json needs --output"]),
        (["cache", "prune", "--max-size", "lots"], ["lots"]),
        (["cache", "prune", "--older-than", "soon"], ["soon"]),
    ],
)
def test_bad_input_gives_one_error_line(
    registry: RunningRegistry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    words: list[str],
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))  # an empty line, for --password-stdin
    write_layout(tmp_path / "src", build_image((100,)), "v1")
    repo = registry.ref(registry.repo("bad")).rpartition(":")[0]
    assert cli(capsys, "push", f"oci:{tmp_path / 'src'}:v1", f"{repo}:v1")[0] == 0
    before = sorted(os.listdir(tmp_path))
    code, out, err = cli(capsys, *(a.format(repo=repo, host=registry.host, t=tmp_path) for a in argv))
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.splitlines()
    if code == 2:  # a usage error, as argparse reports them: the usage, then one line saying what is wrong
        assert lines[0].startswith("usage: cargohold") and len(lines) >= 2 and ": error: argument " in lines[-1], err
        assert all(word in lines[-1] for word in words), err
    else:
        assert code == 1 and len(lines) == 1 and lines[0].startswith("cargohold: error: "), err
        assert all(word in lines[0] for word in words), err
    assert out == "" and sorted(os.listdir(tmp_path)) == before
