"""Entry point of the ``cargohold`` command: one sub-command module per verb group.

Each module in :data:`COMMAND_MODULES` exposes ``register(subparsers)``, which
adds its sub-commands and sets ``func`` on each parser; ``func(args)`` returns
the exit code. To start quickly, a run of one command imports only the module
that owns it (:data:`COMMANDS`); help and unknown commands import them all.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES: tuple[str, ...] = (
    "cargohold.cli.serve",
    "cargohold.cli.admin",
    "cargohold.cli.client_read",
    "cargohold.cli.client_write",
)

#: top-level command -> the module that registers it (checked against the modules by a test)
COMMANDS: dict[str, str] = {
    "serve": "cargohold.cli.serve",
    "admin": "cargohold.cli.admin",
    **dict.fromkeys(
        ("catalog", "tags", "inspect", "manifest", "config", "digest", "check"), "cargohold.cli.client_read"
    ),
    **dict.fromkeys(
        ("login", "logout", "copy", "pull", "push", "sync", "tag", "delete", "blob"), "cargohold.cli.client_write"
    ),
}


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cargohold", description="container registry and client")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in modules:
        importlib.import_module(name).register(subparsers)
    return parser


def _modules_for(argv: Sequence[str]) -> Sequence[str]:
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    module = COMMANDS.get(command or "")
    return (module,) if module is not None else COMMAND_MODULES


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_modules_for(arguments))
    args = parser.parse_args(arguments)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
