"""Entry point of the ``cargohold`` command: one sub-command module per verb group.

Each module in :data:`COMMAND_MODULES` exposes ``register(subparsers)``, which
adds its sub-commands and sets ``func`` on each parser; ``func(args)`` returns
the exit code. To start quickly, a run of one command imports only the module
that owns it (:data:`COMMANDS`); help and unknown commands import them all.

:func:`main` runs a command and lets a bug raise (tests call it); :func:`program`
is the installed command: a closed pipe, an interrupt or a bug end it with one
line on stderr and a non-zero exit code instead of a traceback (``--debug``
keeps the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

COMMAND_MODULES: tuple[str, ...] = (
    "cargohold.cli.serve",
    "cargohold.cli.migrate",
    "cargohold.cli.admin",
    "cargohold.cli.audit",
    "cargohold.cli.retention",
    "cargohold.cli.gc",
    "cargohold.cli.usage",
    "cargohold.cli.webhooks",
    "cargohold.cli.scrub",
    "cargohold.cli.mirror",
    "cargohold.cli.client_read",
    "cargohold.cli.client_login",
    "cargohold.cli.client_write",
    "cargohold.cli.client_blob",
    "cargohold.cli.client_edit",
    "cargohold.cli.client_artifact",
    "cargohold.cli.client_layers",
    "cargohold.cli.cache",
)

#: top-level command -> the module that registers it (checked against the modules by a test)
COMMANDS: dict[str, str] = {
    "serve": "cargohold.cli.serve",
    "migrate": "cargohold.cli.migrate",
    "admin": "cargohold.cli.admin",
    "audit": "cargohold.cli.audit",
    "retention": "cargohold.cli.retention",
    "gc": "cargohold.cli.gc",
    "usage": "cargohold.cli.usage",
    "webhooks": "cargohold.cli.webhooks",
    "scrub": "cargohold.cli.scrub",
    "mirror": "cargohold.cli.mirror",
    **dict.fromkeys(
        ("catalog", "tags", "ls", "inspect", "manifest", "config", "digest", "check"), "cargohold.cli.client_read"
    ),
    **dict.fromkeys(("login", "logout"), "cargohold.cli.client_login"),
    **dict.fromkeys(("copy", "cp", "pull", "push", "sync", "tag", "delete"), "cargohold.cli.client_write"),
    "blob": "cargohold.cli.client_blob",
    **dict.fromkeys(("index", "mutate"), "cargohold.cli.client_edit"),
    **dict.fromkeys(("artifact", "referrers"), "cargohold.cli.client_artifact"),
    **dict.fromkeys(("append", "flatten", "export"), "cargohold.cli.client_layers"),
    "cache": "cargohold.cli.cache",
}


class _VersionAction(argparse.Action):
    """``--version``: the installed distribution's version, looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any):
        super().__init__(option_strings, argparse.SUPPRESS, nargs=0, default=argparse.SUPPRESS,
                         help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("cargohold")
        except PackageNotFoundError:
            found = "(not installed: run from a source tree)"
        print(f"cargohold {found}")
        parser.exit()


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cargohold", description="container registry and client")
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in modules:
        importlib.import_module(name).register(subparsers)
    return parser


def _modules_for(argv: Sequence[str]) -> Sequence[str]:
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    module = COMMANDS.get(command or "")
    return (module,) if module is not None else COMMAND_MODULES


def _skip_httpx_cli() -> None:
    """Keep httpx from importing its own command line at every start of ours.

    ``import httpx`` tries ``httpx._main``, which imports click and pygments when
    they are installed (granian brings click): ~25 ms of CPU per command for code
    no cargohold command runs. A None in ``sys.modules`` makes that import fail at
    once, and httpx falls back as it does without them. This process is ours, so
    the choice is ours; the library (``cargohold.client``) leaves it alone.
    """
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    _skip_httpx_cli()
    parser = build_parser(_modules_for(arguments))
    args = parser.parse_args(arguments)
    code: int = args.func(args)
    return code


#: exit code after the reader of stdout went away: 128 + SIGPIPE, as a command killed by it ends
EXIT_BROKEN_PIPE = 141
#: exit code after a bug (sysexits' EX_SOFTWARE)
EXIT_INTERNAL_ERROR = 70


def program(argv: Sequence[str] | None = None) -> int:
    """The ``cargohold`` command: :func:`main` with the top-level handling of a closed pipe, ^C and bugs."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    try:
        try:
            code = main(arguments)
        except SystemExit:  # argparse's --help and usage errors
            sys.stdout.flush()
            raise
        sys.stdout.flush()  # inside the try: the last buffered write may be the one that meets the closed pipe
        return code
    except BrokenPipeError:
        # the reader went away (``| head``): stop quietly; stdout goes to devnull so that
        # the interpreter's final flush at exit cannot fail again (Python's signal docs)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("cargohold: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if "--debug" in arguments:
            raise
        print(f"cargohold: internal error: {type(exc).__name__}: {exc} (--debug shows where)", file=sys.stderr)
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(program())
