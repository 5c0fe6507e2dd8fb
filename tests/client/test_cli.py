"""The ``cargohold`` client commands, run in-process, and skopeo interoperability."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from cargohold.client import OCILayout
from tests.support.requirements import requires_tool

from .cli_support import isolated, run  # noqa: F401 - isolated is an autouse fixture
from .conftest import RunningRegistry
from .images import build_image, multiarch, write_layout


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_push_inspect_pull_delete(
    registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = build_image((1000,), labels={"cli": "1"})
    write_layout(tmp_path / "src", image, "v1")
    ref = registry.ref(registry.repo(), "1.0")
    pushed = run_json(capsys, "push", f"oci:{tmp_path / 'src'}:v1", ref)
    assert pushed["digest"] == str(image.digest)  # type: ignore[index]
    assert run_json(capsys, "digest", ref)["digest"] == str(image.digest)  # type: ignore[index]
    info = run_json(capsys, "inspect", ref)
    assert info["image"]["labels"] == {"cli": "1"}  # type: ignore[index]
    code, out, _ = run(capsys, "inspect", ref)
    assert code == 0 and "Layers:" in out and str(image.digest) in out
    code, out, _ = run(capsys, "manifest", ref)
    assert out.encode() == image.manifest
    assert run_json(capsys, "tags", ref.rpartition(":")[0]) == ["1.0"]
    assert run_json(capsys, "tag", ref, "1.1", "latest")["tags"] == ["1.1", "latest"]  # type: ignore[index]
    details = run_json(capsys, "tags", "--details", ref.rpartition(":")[0])
    assert {t["digest"] for t in details} == {str(image.digest)}  # type: ignore[union-attr,index]
    assert run_json(capsys, "check", ref)["ok"] is True  # type: ignore[index]
    run_json(capsys, "pull", ref, f"oci:{tmp_path / 'dst'}:pulled")
    assert OCILayout(tmp_path / "dst").resolve("pulled").digest == image.digest
    deleted = run_json(capsys, "delete", ref.rpartition(":")[0] + ":1.1")
    assert deleted["tagsRemoved"] == ["1.1"]  # type: ignore[index]
    assert sorted(run_json(capsys, "tags", ref.rpartition(":")[0])) == ["1.0", "latest"]  # type: ignore[arg-type]
    namespaces = run_json(capsys, "catalog", registry.host, "--namespaces")
    assert "test" in namespaces  # type: ignore[operator]


def test_errors_are_one_line(registry: RunningRegistry, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "manifest", registry.ref(registry.repo(), "missing"))
    assert code == 1 and out == ""
    # an unknown repository may be reported as NAME_UNKNOWN (cargohold) or MANIFEST_UNKNOWN (Distribution)
    assert re.match(r"cargohold: error: (MANIFEST|NAME)_UNKNOWN", err) and err.count("\n") == 1
    code, _, err = run(capsys, "inspect", "Bad Reference!!")
    assert code == 1 and "invalid" in err and "Traceback" not in err
    code, _, err = run(capsys, "pull", registry.ref(registry.repo()), "oci:/nonexistent/\0bad")
    assert code == 1


def test_docker_archive_round_trip(
    registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = build_image((1000, 3000), docker=True)
    write_layout(tmp_path / "src", image, "v1")
    ref = registry.ref(registry.repo(), "v1")
    run_json(capsys, "push", f"oci:{tmp_path / 'src'}:v1", ref)
    tar = tmp_path / "image.tar"
    run_json(capsys, "pull", ref, f"docker-archive:{tar}")
    back = registry.ref(registry.repo("archive"), "v1")
    result = run_json(capsys, "push", f"docker-archive:{tar}", back)
    # docker schema 2, gzip layers, 3-space indent: the manifest rebuilt from the tar is the original
    assert result["digest"] == str(image.digest)  # type: ignore[index]
    code, out, _ = run(capsys, "config", back)
    assert out.encode() == next(b for b in image.blobs.values() if b.startswith(b"{"))


@requires_tool("skopeo")
def test_skopeo_reads_what_we_push_and_we_read_what_skopeo_pushes(
    registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = multiarch()
    write_layout(tmp_path / "src", index, "multi")
    ours = registry.ref(registry.repo("ours"), "multi")
    run_json(capsys, "push", f"oci:{tmp_path / 'src'}:multi", ours)
    subprocess.run(
        ["skopeo", "copy", "--all", "--src-tls-verify=false", f"docker://{ours}", f"oci:{tmp_path / 'skopeo'}:got"],
        check=True,
        capture_output=True,
    )
    assert OCILayout(tmp_path / "skopeo").resolve("got").digest == index.digest
    theirs = registry.ref(registry.repo("theirs"), "s1")
    subprocess.run(
        ["skopeo", "copy", "--all", "--dest-tls-verify=false", f"oci:{tmp_path / 'src'}:multi", f"docker://{theirs}"],
        check=True,
        capture_output=True,
    )
    assert run_json(capsys, "digest", theirs)["digest"] == str(index.digest)  # type: ignore[index]
    run_json(capsys, "pull", "--all-platforms", theirs, f"oci:{tmp_path / 'back'}:x")
    assert OCILayout(tmp_path / "back").read_blob(index.digest) == index.manifest


def test_login_logout_write_config(
    auth_registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = auth_registry.host
    code, _, err = run(capsys, "login", host, "-u", "tester", "-p", "wrong")
    assert code == 1 and "UNAUTHORIZED" in err
    code, out, _ = run(capsys, "login", host, "-u", auth_registry.username or "", "-p", auth_registry.password or "")
    assert code == 0 and "Login Succeeded" in out
    config = json.loads((tmp_path / "docker" / "config.json").read_text())
    assert host in config["auths"]
    image = build_image((100,))
    write_layout(tmp_path / "src", image, "v1")
    assert run_json(capsys, "push", f"oci:{tmp_path / 'src'}:v1", auth_registry.ref(auth_registry.repo()))
    code, _, _ = run(capsys, "logout", host)
    assert code == 0
    code, _, err = run(capsys, "tags", auth_registry.ref(auth_registry.repo()))
    assert code == 1 and "UNAUTHORIZED" in err
