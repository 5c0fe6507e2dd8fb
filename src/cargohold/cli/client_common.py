"""Shared plumbing of the client sub-commands: options, locations, output, errors, progress.

Locations are written as skopeo users write them: a registry reference
(``localhost:5000/team/app:1.0``, ``...@sha256:...``, optionally ``docker://``),
``oci:DIR[:TAG]`` for an OCI image layout, ``docker-archive:FILE[:REF]`` for a tar.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..client import (
    Credentials,
    DockerConfig,
    MultiKeychain,
    RegistryClient,
    StaticKeychain,
    TransportOptions,
)
from ..client.cache import BlobCache
from ..client.image import parse_platform
from ..digest import DigestError
from ..errcodes import RegistryError
from ..formats import ManifestError, Platform
from ..reference import Reference, ReferenceError
from ..sizes import human_size

Command = Callable[[argparse.Namespace], int]


@dataclass(frozen=True, slots=True)
class Location:
    """Where an image is: a registry reference, an OCI layout, or a docker-archive file."""

    kind: str  # "registry", "oci" or "docker-archive"
    ref: Reference | None = None
    path: Path | None = None
    name: str | None = None  # the tag in a layout, the reference in an archive

    def __str__(self) -> str:
        if self.kind == "registry":
            return str(self.ref)
        return f"{self.kind}:{self.path}" + (f":{self.name}" if self.name else "")


def parse_location(text: str) -> Location:
    """Parse a command-line location (see the module docstring)."""
    for kind in ("oci", "docker-archive"):
        if text.startswith(kind + ":"):
            rest = text[len(kind) + 1 :]
            path, sep, name = rest.partition(":")
            if not path:
                raise ReferenceError(f"{text!r}: {kind}: needs a path")
            return Location(kind, path=Path(path), name=name if sep and name else None)
    return Location("registry", ref=parse_reference(text))


def parse_reference(text: str) -> Reference:
    return Reference.parse(text.removeprefix("docker://"))


def repository_of(text: str) -> Reference:
    """A repository given with or without a tag (``host/ns/repo``)."""
    return parse_reference(text)


def add_transport_options(parser: argparse.ArgumentParser) -> None:
    """Flags every registry-speaking command takes."""
    group = parser.add_argument_group("registry access")
    group.add_argument(
        "--insecure",
        action="store_true",
        help="treat every registry as insecure: HTTPS without certificate checks, else plain HTTP",
    )
    group.add_argument(
        "--insecure-registry",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="treat this registry as insecure (repeatable); loopback registries may always answer plain HTTP",
    )
    group.add_argument(
        "--tls-verify",
        default="true",
        choices=["true", "false"],
        help="verify TLS certificates (default true); false also allows plain HTTP, as skopeo's",
    )
    group.add_argument("--ca-cert", metavar="PEM", help="extra CA bundle to trust")
    group.add_argument("--cert", metavar="PEM", help="client certificate (mutual TLS)")
    group.add_argument("--key", metavar="PEM", help="client certificate's key")
    group.add_argument("--creds", metavar="USER:PASS", help="credentials for the registries of this command")
    group.add_argument("--authfile", metavar="FILE", help="docker config.json to read credentials from")
    add_json_option(group)
    group.add_argument("--jobs", type=int, default=4, help="parallel transfers (default 4)")


def add_json_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--json``, which every client command takes."""
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output")


def regex(text: str) -> str:
    """An argparse type: a regular expression, refused at parse time if it does not compile."""
    try:
        re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"invalid regular expression {text!r}: {exc}") from None
    return text


def add_platform_options(parser: argparse.ArgumentParser, *, all_platforms: bool = True) -> None:
    parser.add_argument(
        "--platform", metavar="OS/ARCH[/VARIANT]", help="image of an index to use (default: this machine's)"
    )
    if all_platforms:
        parser.add_argument(
            "--all-platforms", "--all", action="store_true", help="the whole index, every platform"
        )


def platform_of(args: argparse.Namespace) -> Platform | None:
    text: str | None = getattr(args, "platform", None)
    return parse_platform(text) if text else None


def transport_options(args: argparse.Namespace) -> TransportOptions:
    """:class:`TransportOptions` from the common flags."""
    for flag, name in (("--ca-cert", args.ca_cert), ("--cert", args.cert), ("--key", args.key)):
        if name and not Path(name).is_file():  # else the TLS library's error names no file
            raise ValueError(f"{flag} {name}: no such file")
    cert: str | tuple[str, str] | None = None
    if args.cert:
        cert = (args.cert, args.key) if args.key else args.cert
    elif args.key:
        raise ValueError("--key needs --cert")
    return TransportOptions(
        insecure_registries=frozenset(args.insecure_registry),
        insecure_all=args.insecure,
        verify_tls=args.tls_verify == "true",
        ca_bundle=args.ca_cert,
        client_cert=cert,
    )


def make_client(args: argparse.Namespace) -> RegistryClient:
    """A :class:`RegistryClient` configured from the common flags."""
    options = transport_options(args)
    config = DockerConfig(Path(args.authfile)) if args.authfile else DockerConfig()
    keychain: StaticKeychain | DockerConfig | MultiKeychain = config
    if args.creds:
        username, sep, password = args.creds.partition(":")
        if not sep:
            raise ValueError("--creds must be USER:PASSWORD")
        keychain = MultiKeychain(StaticKeychain(Credentials(username, password)), config)
    return RegistryClient(keychain=keychain, options=options, workers=max(1, args.jobs))


def make_cache(args: argparse.Namespace) -> BlobCache:
    directory: str | None = getattr(args, "cache_dir", None)
    return BlobCache(Path(directory) if directory else None)


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Columns padded to their widest cell, as docker prints lists."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


class TerminalProgress:
    """A one-line progress bar on stderr, redrawn at most every :attr:`interval` seconds.

    Only created when stderr is a terminal (:func:`progress_for`), so scripts and
    logs never see carriage returns.
    """

    #: seconds between redraws: smooth to the eye, cheap for parallel transfers
    interval = 0.1

    def __init__(self, label: str) -> None:
        self.label = label
        self.total = 0
        self.done = 0
        self._lock = threading.Lock()
        self._drawn = 0.0

    def add_total(self, size: int) -> None:
        with self._lock:
            self.total += size
        self._draw()

    def advance(self, size: int) -> None:
        with self._lock:
            self.done += size
        self._draw()

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if not force and now - self._drawn < self.interval:
                return
            self._drawn = now
            done, total = self.done, self.total
        fraction = min(done / max(total, 1), 1.0)
        bar = "#" * int(fraction * 30)
        sys.stderr.write(f"\r{self.label} [{bar:<30}] {human_size(done)}/{human_size(total)}")
        sys.stderr.flush()

    def finish(self) -> None:
        """Draw the final state and end the line."""
        self._draw(force=True)
        sys.stderr.write("\n")


def progress_for(label: str, args: argparse.Namespace) -> TerminalProgress | None:
    if args.json or not sys.stderr.isatty():
        return None
    return TerminalProgress(label)


#: failures reported as one line; anything else is a bug and keeps its traceback
EXPECTED_ERRORS = (RegistryError, ReferenceError, DigestError, ManifestError, ValueError, OSError)


def command(func: Command) -> Command:
    """Wrap a sub-command: known failures print one line on stderr and exit 1 (tracebacks with --debug)."""
    from ..client import ClientError

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except BrokenPipeError:
            raise  # an OSError, but not a failure of the command: the top level ends quietly
        except (ClientError, *EXPECTED_ERRORS) as exc:
            if getattr(args, "debug", False):
                raise
            message = str(exc) or type(exc).__name__
            print(f"cargohold: error: {message}", file=sys.stderr)
            return 1

    return run
