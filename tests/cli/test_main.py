"""The command table matches what the modules register, and help lists every command."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cargohold.cli.main import COMMAND_MODULES, COMMANDS, main

SRC = Path(__file__).resolve().parents[2] / "src"


def test_command_table_matches_the_modules() -> None:
    registered = {}
    for name in COMMAND_MODULES:
        parser = argparse.ArgumentParser()
        subparsers = parser.add_subparsers()
        importlib.import_module(name).register(subparsers)
        registered.update(dict.fromkeys(subparsers.choices, name))
    assert registered == COMMANDS


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out


@pytest.mark.skipif(importlib.util.find_spec("click") is None, reason="httpx imports its CLI only with click")
def test_a_client_command_does_not_import_the_http_librarys_command_line() -> None:
    # a fresh process: in this one, httpx is already imported
    code = (
        "import sys\n"
        "from cargohold.cli.main import main\n"
        "try:\n    main(['pull', '--help'])\nexcept SystemExit:\n    pass\n"
        "import httpx\n"
        "assert 'httpx' in sys.modules\n"
        "print(sorted(m for m in ('click', 'pygments', 'httpx._main') if sys.modules.get(m) is not None))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(SRC)})
    assert done.stdout.strip().splitlines()[-1] == "[]"
