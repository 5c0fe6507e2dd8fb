"""The command table matches what the modules register, and help lists every command."""

from __future__ import annotations

import argparse
import importlib

import pytest

from cargohold.cli.main import COMMAND_MODULES, COMMANDS, main


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
