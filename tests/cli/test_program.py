"""The installed command's top level: a closed pipe, a prompt without a terminal and a bug end it with
one line (or none) and a non-zero exit code, never a traceback."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cargohold.cli import admin as admin_module
from cargohold.cli.main import EXIT_BROKEN_PIPE, EXIT_INTERNAL_ERROR, main, program

SRC = Path(__file__).resolve().parents[2] / "src"
ENV = {**os.environ, "PYTHONPATH": str(SRC), "CARGOHOLD_PASSWORD_COST": "4"}


def into_closed_pipe(*argv: str) -> subprocess.CompletedProcess[bytes]:
    """``cargohold ARGV | head -c0``: stdout is a pipe whose reader is already gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "cargohold.cli.main", *argv],
            stdout=write_end, stderr=subprocess.PIPE, env=ENV, timeout=60, check=False,
        )
    finally:
        os.close(write_end)


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    subprocess.run(
        [sys.executable, "-m", "cargohold.cli.main", "admin", "--data-dir", data, "user", "add", "alice",
         "--password-stdin"], input=b"alice-password\n", env=ENV, check=True, capture_output=True,
    )
    for argv in (
        ("admin", "--data-dir", data, "user", "list", "--json"),
        ("admin", "--data-dir", data, "user", "list"),
        ("--help",),  # argparse ignores the failed write: no traceback, whatever the exit code
        ("logout", "127.0.0.1:1", "--authfile", str(tmp_path / "none.json")),  # stderr only: no pipe met
    ):
        result = into_closed_pipe(*argv)
        assert b"Traceback" not in result.stderr and b"BrokenPipe" not in result.stderr, (argv, result.stderr)
        if argv[0] not in ("logout", "--help"):
            assert result.returncode == EXIT_BROKEN_PIPE, argv


def test_login_without_a_terminal(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", "/nonexistent")
    for argv in (["login", "127.0.0.1:1"], ["login", "127.0.0.1:1", "-u", "alice"]):
        monkeypatch.setattr(sys, "stdin", io.StringIO(""))
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not a terminal" in err and "--password-stdin" in err
    # the same through a real process with stdin closed
    result = subprocess.run(
        [sys.executable, "-m", "cargohold.cli.main", "login", "127.0.0.1:1"],
        stdin=subprocess.DEVNULL, capture_output=True, env=ENV, timeout=60, check=False,
    )
    assert result.returncode == 1 and result.stderr.count(b"\n") == 1 and b"not a terminal" in result.stderr


def test_a_bug_is_one_line_for_users_and_a_traceback_for_tests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CARGOHOLD_PASSWORD_COST", "4")
    data = str(tmp_path / "data")
    monkeypatch.setattr(sys, "stdin", io.StringIO("alice-password\n"))
    assert main(["admin", "--data-dir", data, "user", "add", "alice", "--password-stdin"]) == 0

    def broken(*_: object) -> int:
        raise RuntimeError("something the code did not expect")

    monkeypatch.setattr(admin_module, "account_list", broken)
    capsys.readouterr()
    assert program(["admin", "--data-dir", data, "user", "list"]) == EXIT_INTERNAL_ERROR
    out, err = capsys.readouterr()
    assert out == "" and err == (
        "cargohold: internal error: RuntimeError: something the code did not expect (--debug shows where)\n"
    )
    with pytest.raises(RuntimeError):
        main(["admin", "--data-dir", data, "user", "list"])
    with pytest.raises(RuntimeError):
        program(["--debug", "admin", "--data-dir", data, "user", "list"])
