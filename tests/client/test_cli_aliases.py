"""crane's short names: ``ls`` for ``tags`` and ``cp`` for ``copy`` (``catalog`` keeps its name)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cargohold.cli.main import COMMANDS, main
from cargohold.client import OCILayout

from .cli_support import isolated, run  # noqa: F401 - isolated is an autouse fixture
from .conftest import ROOT, RunningRegistry
from .images import build_image, write_layout


def test_aliases_are_in_the_command_table_and_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert COMMANDS["ls"] == COMMANDS["tags"] == "cargohold.cli.client_read"
    assert COMMANDS["cp"] == COMMANDS["copy"] == "cargohold.cli.client_write"
    assert "catalog" in COMMANDS
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "tags (ls)" in out and "copy (cp)" in out


def test_an_alias_loads_only_its_own_module() -> None:
    """A run of one command imports the module that owns it: the alias must lead there too."""
    code = (
        "import sys\n"
        "from cargohold.cli.main import main\n"
        "try:\n    main(['ls', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('cargohold.cli.client_')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert "usage: cargohold tags" in done.stdout  # the help of the command it stands for
    assert done.stdout.strip().splitlines()[-1] == "['cargohold.cli.client_common', 'cargohold.cli.client_read']"


def test_ls_lists_what_tags_lists(
    registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = build_image((100,))
    write_layout(tmp_path / "src", image, "v1")
    repo = registry.ref(registry.repo("ls")).rpartition(":")[0]
    for tag in ("1.0", "1.1", "dev"):
        assert run(capsys, "cp", f"oci:{tmp_path / 'src'}:v1", f"{repo}:{tag}")[0] == 0
    for flags in ([], ["--json"], ["--json", "--details"], ["--filter", "^1"]):
        tags = run(capsys, "tags", *flags, repo)
        assert tags[0] == 0 and tags[1]
        assert run(capsys, "ls", *flags, repo) == tags
    assert sorted(json.loads(run(capsys, "ls", "--json", repo)[1])) == ["1.0", "1.1", "dev"]


def test_cp_copies_as_copy_does(registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = build_image((100,))
    write_layout(tmp_path / "src", image, "v1")
    ref = registry.ref(registry.repo("cp"))
    code, out, err = run(capsys, "cp", "--json", f"oci:{tmp_path / 'src'}:v1", ref)
    assert code == 0, err
    assert json.loads(out)["digest"] == str(image.digest)
    code, out, err = run(capsys, "cp", ref, f"oci:{tmp_path / 'back'}:v1")
    assert code == 0 and out.startswith(f"copied {ref} -> oci:{tmp_path / 'back'}:v1: {image.digest}"), err
    assert OCILayout(tmp_path / "back").resolve("v1").digest == image.digest
    code, out, err = run(capsys, "cp", "--json", f"oci:{tmp_path / 'back'}:v1", f"docker-archive:{tmp_path / 'a.tar'}")
    assert code == 0 and json.loads(out)["digest"] == str(image.digest), err
