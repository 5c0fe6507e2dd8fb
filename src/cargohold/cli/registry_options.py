"""What the commands that work on a registry's database share (admin, audit, webhooks, migrate): where the
registry is (``--config``, ``--data-dir``, ``--database-url``), its configuration, and how they print."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any

from ..config import ConfigError, ServerConfig, load_config


def add_location_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML configuration file (CARGOHOLD_CONFIG)")
    parser.add_argument("--data-dir", dest="data_dir", metavar="DIR", help="the server's data directory")
    parser.add_argument("--database-url", dest="database_url", metavar="URL",
                        help="metadata database: postgresql://USER@HOST:PORT/DB (default: SQLite in the data dir)")


def located_config(args: argparse.Namespace) -> ServerConfig:
    """The configuration, with the location options over the environment and the file."""
    overrides = {"config": args.config, "data_dir": args.data_dir, "database_url": args.database_url}
    return load_config(None, overrides, dict(os.environ))


def require_registry(config: ServerConfig) -> None:
    """Refuse a data directory that holds no registry (a mistyped --data-dir), creating nothing."""
    database = config.metadata_url.removeprefix("sqlite://")
    if config.metadata_url.startswith("sqlite://") and not os.path.exists(database):
        raise ConfigError(f"{config.data_dir} holds no registry (no {os.path.basename(database)}): check --data-dir")


def verb_parser(sub: Any, name: str, action: Callable[..., Any], help_text: str,
                **defaults: Any) -> argparse.ArgumentParser:
    """A subcommand with ``--json`` whose ``args.action`` is ``action``."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(action=action, **defaults)
    return parser


def print_rows(args: argparse.Namespace, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """``rows`` as JSON with ``--json``, else as a table of ``columns`` (empty cells for None)."""
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    cells = [[c.upper() for c in columns], *[["" if r.get(c) is None else str(r[c]) for c in columns] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
