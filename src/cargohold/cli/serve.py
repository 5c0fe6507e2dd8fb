"""``cargohold serve``: run the registry."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import math
import os
import signal
import socket
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

from ..auth.controller import TokenAccessController
from ..auth.stored_keys import token_key_source
from ..config import ConfigError, ServerConfig, load_config
from ..metadata.factory import shown
from ..metadata.store import MetadataError

if TYPE_CHECKING:
    from ..api.app import RegistryApp


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run the registry",
        description="Run the registry. Settings come from flags, CARGOHOLD_* variables and a YAML file.",
    )
    parser.add_argument("--config", metavar="FILE", help="YAML configuration file (CARGOHOLD_CONFIG)")
    parser.add_argument("--listen", metavar="HOST:PORT", help="address to listen on (default 127.0.0.1:5000)")
    parser.add_argument("--data-dir", dest="data_dir", metavar="DIR", help="where blobs and metadata live")
    parser.add_argument("--database-url", dest="database_url", metavar="URL",
                        help="metadata database: postgresql://USER@HOST:PORT/DB (default: SQLite in the data dir)")
    parser.add_argument("--tls-cert", dest="tls_cert", metavar="FILE", help="serve HTTPS with this certificate")
    parser.add_argument("--tls-key", dest="tls_key", metavar="FILE", help="private key for --tls-cert")
    deletes = parser.add_mutually_exclusive_group()
    deletes.add_argument("--enable-delete", dest="delete_enabled", action="store_const", const=True)
    deletes.add_argument("--disable-delete", dest="delete_enabled", action="store_const", const=False)
    parser.add_argument("--read-only", dest="read_only", action="store_const", const=True, help="refuse writes")
    parser.add_argument("--log-level", dest="log_level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--workers", type=int, help="worker processes (default: one per CPU, at most 8)")
    parser.add_argument("--auth", choices=["none", "htpasswd", "token"],
                        help="access control (default none: anyone may do anything)")
    parser.add_argument("--htpasswd", dest="auth_htpasswd", metavar="FILE",
                        help="bcrypt htpasswd file for --auth htpasswd")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..api.server import CONFIG_ENV, SERVER_PID_ENV, create_app, tune_allocator

    tune_allocator()  # before any thread starts: the workers granian forks inherit it
    from granian import Granian
    from granian.constants import Interfaces, Loops
    from granian.http import HTTP1Settings

    overrides = {k: getattr(args, k, None) for k in (
        "config", "listen", "data_dir", "database_url", "tls_cert", "tls_key", "delete_enabled", "read_only",
        "log_level", "workers", "auth", "auth_htpasswd",
    )}
    try:
        config = load_config(None, overrides, dict(os.environ))
    except ConfigError as exc:
        print(f"cargohold: {exc}", file=sys.stderr)
        return 2
    # before anything is written to the data directory: what would stop granian later with a traceback
    try:
        _check_tls(config)
        port_claim = claim_port(config.server.host, config.server.port)
        own_listener = config.metrics.enabled and config.metrics.listen is not None
        metrics_claim = claim_port(config.metrics.host, config.metrics.port) if own_listener else None
    except StartError as exc:
        print(f"cargohold: {exc}", file=sys.stderr)
        return 1
    # Migrations run here, once, and the app is built once so that bad settings fail before workers start.
    try:
        _migrate(config)
    except MetadataError as exc:
        print(f"cargohold: {exc}", file=sys.stderr)
        return 1
    metrics_dir = _metrics_directory(config)  # before anything imports prometheus_client
    try:
        app = create_app(config)
    except Exception as exc:  # noqa: BLE001 - reported as one line
        if metrics_dir is not None:
            from ..metrics.directory import remove

            remove(metrics_dir)
        if isinstance(exc, ConfigError):
            print(f"cargohold: {exc}", file=sys.stderr)
            return 2
        print(f"cargohold: cannot open storage: {exc}", file=sys.stderr)
        return 1
    _announce_auth(config, app)
    _announce_notifications(config)
    os.environ[CONFIG_ENV] = config.to_json()
    os.environ[SERVER_PID_ENV] = str(os.getpid())
    scheme = "https" if config.server.tls.cert else "http"
    print(f"cargohold: listening on {scheme}://{config.server.listen}", flush=True)
    print(f"cargohold: data in {os.path.abspath(config.data_dir)} (blobs: {config.storage.driver}, "
          f"metadata: {shown(config.metadata_url)})", flush=True)
    tls: dict[str, Any] = {}
    if config.server.tls.cert and config.server.tls.key:
        from pathlib import Path

        tls = {"ssl_cert": Path(config.server.tls.cert), "ssl_key": Path(config.server.tls.key)}
    server = Granian(
        "cargohold.api.server:app_from_environment",
        address=config.server.host,
        port=config.server.port,
        interface=Interfaces.ASGI,
        factory=True,
        workers=config.server.workers,
        loop=_event_loop(Loops),
        http1_settings=HTTP1Settings(max_buffer_size=HTTP1_BUFFER_SIZE),
        log_level=config.server.log_level,  # type: ignore[arg-type]
        log_access=False,
        # without it granian waits forever for a worker that does not stop; one that is sent
        # SIGTERM by its parent and by another sender at once (systemd's control-group stop,
        # pkill) can hang in granian's signal handler
        workers_kill_timeout=math.ceil(config.server.shutdown_timeout_seconds),
        **tls,
    )
    if config.server.shutdown_delay_seconds > 0:
        server.on_startup(lambda: _drain_on_sigterm(server, config.server.shutdown_delay_seconds))
    listener = None
    if own_listener:
        from ..metrics import listener as metrics_listener

        if metrics_claim is not None:
            metrics_claim.close()
        listener = metrics_listener.start()
        print(f"cargohold: metrics on http://{config.metrics.listen}/metrics", flush=True)
    try:
        server.serve()
    finally:
        if port_claim is not None:
            port_claim.close()
        if listener is not None:
            metrics_listener.stop(listener)
        if metrics_dir is not None:
            from ..metrics.directory import remove

            remove(metrics_dir)
    return 0


def _metrics_directory(config: ServerConfig) -> str | None:
    """With metrics on, the workers' fresh metrics directory (named to them in the environment)."""
    if not config.metrics.enabled:
        return None
    from ..metrics.directory import directory_for, prepare

    path = directory_for(config.server.port, config.data_dir)
    prepare(path)
    return path


def _migrate(config: ServerConfig) -> None:
    from ..metadata.schema import migrate

    try:
        os.makedirs(config.data_dir, exist_ok=True)
    except OSError as exc:
        raise MetadataError(f"cannot create the data directory {config.data_dir}: {exc.strerror or exc}") from None
    done = migrate(config.metadata_url)
    if done.applied:
        print(f"cargohold: database schema migrated to {done.version} "
              f"({', '.join(m.label for m in done.applied)})", flush=True)


def _drain_on_sigterm(server: Any, delay: float) -> None:
    """Run after granian installs its signal handlers: SIGTERM first makes the workers' /readyz answer
    503 and, after ``delay`` seconds of serving on, stops granian as its own handler would. A second
    SIGTERM, or SIGINT, stops at once."""
    from ..api.health import DRAIN_SIGNAL

    stop = signal.getsignal(signal.SIGTERM)
    if not callable(stop):
        return
    draining = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if draining.is_set():
            stop(signum, frame)
            return
        draining.set()
        for worker in getattr(server, "wrks", []):
            pid = getattr(getattr(worker, "inner", None), "pid", None)
            if pid is not None:
                with contextlib.suppress(OSError):
                    os.kill(pid, DRAIN_SIGNAL)
        print(f"cargohold: draining: stopping in {delay:g} s", file=sys.stderr, flush=True)
        timer = threading.Timer(delay, stop, (signum, None))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, on_sigterm)


class StartError(Exception):
    """The server cannot start; the message is the one line to print."""


def _check_tls(config: ServerConfig) -> None:
    cert, key = config.server.tls.cert, config.server.tls.key
    if not (cert and key):
        return
    import ssl

    for what, path in (("certificate", cert), ("key", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise StartError(f"cannot read the TLS {what} {path}: {exc.strerror or exc}") from None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except (ssl.SSLError, ValueError) as exc:
        raise StartError(f"TLS certificate {cert} and key {key}: unusable ({exc})") from None


def claim_port(host: str, port: int) -> socket.socket | None:
    """Refuse a port something listens on, and keep other cargohold servers off it while this one runs.

    granian's listening sockets set SO_REUSEPORT, so a second server would bind the same port and
    share its connections. A probe bound without SO_REUSEPORT fails while anything listens there.
    Between the probe and granian's own bind, a lock named after the port (Linux: an abstract Unix
    socket, released by the kernel when the process ends) keeps a second cargohold from slipping in.
    """
    claim = None
    if sys.platform.startswith("linux"):
        claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            claim.bind(f"\0cargohold-port-{port}")
        except OSError:
            claim.close()
            raise StartError(f"port {port} is already in use (by another cargohold server)") from None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # connections in TIME_WAIT do not count
            probe.bind(address)
    except OSError as exc:
        if claim is not None:
            claim.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartError(f"port {port} is already in use ({host}:{port})") from None
        raise StartError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return claim


#: largest read buffer of an HTTP/1 connection (granian's default: 408 KiB). Upload bodies reach the
#: app in pieces of up to this size; with 2 MiB, a 1 GiB PUT into a tmpfs data directory went from
#: ~650-800 to ~1,050 MB/s (fewer hand-overs between granian's thread and the event loop). A buffer
#: only grows this large on a connection that is sending a big body.
HTTP1_BUFFER_SIZE = 2 * 1024 * 1024


def _event_loop(loops: Any) -> Any:
    """uvloop (a dependency) where it is installed, else asyncio's own; never a loop we did not measure."""
    import importlib.util

    return loops.uvloop if importlib.util.find_spec("uvloop") is not None else loops.asyncio


def _announce_notifications(config: ServerConfig) -> None:
    """Each configured webhook endpoint, as Distribution logs them; its settings cargohold does not use."""
    for index, endpoint in enumerate(config.notifications.endpoints):
        state = " (disabled)" if endpoint.disabled else ""
        print(f"cargohold: webhook endpoint {endpoint.name} ({endpoint.url}, {endpoint.format}){state}", flush=True)
        if endpoint.threshold:
            print(f"cargohold: note: notifications.endpoints[{index}].threshold is not used: every failed attempt"
                  " backs off (backoff, doubling up to notifications.backoff_max)", flush=True)
    if config.notifications.events.includereferences:
        print("cargohold: note: notifications.events.includereferences is not used: events carry no references",
              flush=True)


def _announce_auth(config: ServerConfig, app: RegistryApp) -> None:
    if config.auth.mode == "none":
        if config.server.host not in ("127.0.0.1", "localhost", "::1"):
            print("cargohold: warning: auth is off and anyone who can reach this address may push and delete "
                  "(--auth token)", file=sys.stderr, flush=True)
        return
    print(f"cargohold: access control: {config.auth.mode}", flush=True)
    if isinstance(app.access, TokenAccessController):
        print(f"cargohold: tokens signed with the key in {token_key_source(config)}"
              f" (certificate: {config.token_cert_path})", flush=True)
        if not asyncio.run(app.access.store.has_superuser()):
            print("cargohold: no administrator yet: cargohold admin user add NAME --superuser", flush=True)
