"""``cargohold serve``: run the registry."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..config import ConfigError, load_config


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run the registry",
        description="Run the registry. Settings come from flags, CARGOHOLD_* variables and a YAML file.",
    )
    parser.add_argument("--config", metavar="FILE", help="YAML configuration file (CARGOHOLD_CONFIG)")
    parser.add_argument("--listen", metavar="HOST:PORT", help="address to listen on (default 127.0.0.1:5000)")
    parser.add_argument("--data-dir", dest="data_dir", metavar="DIR", help="where blobs and metadata live")
    parser.add_argument("--tls-cert", dest="tls_cert", metavar="FILE", help="serve HTTPS with this certificate")
    parser.add_argument("--tls-key", dest="tls_key", metavar="FILE", help="private key for --tls-cert")
    deletes = parser.add_mutually_exclusive_group()
    deletes.add_argument("--enable-delete", dest="delete_enabled", action="store_const", const=True)
    deletes.add_argument("--disable-delete", dest="delete_enabled", action="store_const", const=False)
    parser.add_argument("--read-only", dest="read_only", action="store_const", const=True, help="refuse writes")
    parser.add_argument("--log-level", dest="log_level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--workers", type=int, help="worker processes (default 1)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from granian import Granian
    from granian.constants import Interfaces, Loops

    from ..api.server import CONFIG_ENV, create_app

    overrides = {k: getattr(args, k, None) for k in (
        "config", "listen", "data_dir", "tls_cert", "tls_key", "delete_enabled", "read_only", "log_level", "workers"
    )}
    try:
        config = load_config(None, overrides, dict(os.environ))
    except ConfigError as exc:
        print(f"cargohold: {exc}", file=sys.stderr)
        return 2
    # Build once here so that migrations run and bad settings fail before workers start.
    try:
        create_app(config).registry.meta  # noqa: B018 - opening is the check
    except Exception as exc:  # noqa: BLE001 - reported as one line
        print(f"cargohold: cannot open storage: {exc}", file=sys.stderr)
        return 1
    os.environ[CONFIG_ENV] = config.to_json()
    scheme = "https" if config.tls_cert else "http"
    print(f"cargohold: listening on {scheme}://{config.listen}", flush=True)
    print(f"cargohold: data in {os.path.abspath(config.data_dir)} (blobs: {config.storage_driver}, "
          f"metadata: {config.metadata_url})", flush=True)
    tls: dict[str, Any] = {}
    if config.tls_cert and config.tls_key:
        from pathlib import Path

        tls = {"ssl_cert": Path(config.tls_cert), "ssl_key": Path(config.tls_key)}
    server = Granian(
        "cargohold.api.server:app_from_environment",
        address=config.host,
        port=config.port,
        interface=Interfaces.ASGI,
        factory=True,
        workers=config.workers,
        loop=Loops.auto,
        log_level=config.log_level,  # type: ignore[arg-type]
        log_access=False,
        **tls,
    )
    server.serve()
    return 0
