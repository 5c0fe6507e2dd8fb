"""Running the CLI in-process with its own docker config and cache (shared by the CLI test modules)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cargohold.cli.main import main


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials and the blob cache go to the test's own folder, never the user's."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``cargohold ARGV``."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
