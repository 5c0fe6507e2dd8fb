"""Entry point of the ``cargohold`` command: one sub-command module per verb group.

Each module in :data:`COMMAND_MODULES` exposes ``register(subparsers)``, which
adds its sub-commands and sets ``func`` on each parser; ``func(args)`` returns
the exit code.
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cargohold", description="container registry and client")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
