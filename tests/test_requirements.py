"""A test whose requirement is missing skips on a developer's machine and fails under CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

UNMET = '''
import pytest

from tests.support.requirements import require, require_module, requires_tool


@requires_tool("cargohold-no-such-program")
def test_mark() -> None:
    pass


def test_call() -> None:
    require(False, "a reason")


def test_module() -> None:
    require_module("cargohold_no_such_module", "nothing")


def test_bare_skip() -> None:
    pytest.skip("skipped outside the helper")


def test_met() -> None:
    require(True, "never shown")
'''


def run(tmp_path: Path, ci: str | None) -> str:
    (tmp_path / "test_unmet.py").write_text(UNMET)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-q", "-rfs", "-p", "no:cacheprovider",
         str(tmp_path / "test_unmet.py")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    return done.stdout


def test_unmet_requirements_skip_locally(tmp_path: Path) -> None:
    out = run(tmp_path, None)
    assert "1 passed, 4 skipped" in out, out
    assert "cargohold-no-such-program is not installed" in out


def test_unmet_requirements_fail_under_ci(tmp_path: Path) -> None:
    out = run(tmp_path, "true")
    assert "3 failed, 1 passed, 1 error" in out, out  # the mark fails the setup: an error
    assert "cargohold-no-such-program is not installed" in out
    assert "skipped outside the helper" in out
