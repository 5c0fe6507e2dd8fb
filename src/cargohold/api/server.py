"""Building the application from configuration, in each worker process."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

from ..auth.keys import KeyFileError
from ..auth.setup import AccessSetup, build_access
from ..auth.stored_keys import schema1_signing_key
from ..config import ConfigError, ServerConfig
from ..events.audit import AuditLog
from ..events.recorder import Recorder
from ..jobs import (
    Activity,
    DeliveryLoop,
    JobRunner,
    audit_purge_job,
    holder_id,
    registry_jobs,
    scrub_job,
    sweep_job,
    usage_job,
)
from ..jobs.gc import gc_job
from ..jobs.retention import retention_job
from ..metadata import MetadataStore, open_metadata_store
from ..metadata.factory import database_for
from ..metadata.migrations import SchemaError
from ..metrics.recorder import Metrics, activate
from ..mirror.local import LocalRegistry
from ..mirror.service import Mirrors
from ..proxy.routing import ProxyRoutes
from ..proxy.setup import proxying_registry
from ..scrub import ScrubRecords
from ..service import Registry, RegistryOptions
from ..service.gc import Collector, open_collector
from ..service.pulls import PullTimes
from ..service.retention import Retention
from ..service.scrub import Scrubber
from ..storage import Sweeper, open_blob_store
from ..storage.driver import BlobStore
from ..ui.pages import ui_routes
from ..webhooks import Endpoints, Links, Sender, Source
from ..webhooks.manage import WebhookAdmin
from .admin_endpoints import AdminApi
from .app import RegistryApp
from .health import watch_for_drain
from .logformat import JsonLineFormatter
from .routes import Route
from .token_endpoint import TokenEndpoint

#: the resolved configuration travels to worker processes in this variable
CONFIG_ENV = "CARGOHOLD_RESOLVED_CONFIG"
#: the server process's PID, so that a worker can tell it is already gone
SERVER_PID_ENV = "CARGOHOLD_SERVER_PID"
#: prctl(2) option: the signal the kernel sends this process when its parent ends
_PR_SET_PDEATHSIG = 1
#: glibc's ``mallopt`` parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
#: blocks of this size and more get mappings of their own, given back to the system when freed
MMAP_THRESHOLD = 1 << 20
#: free memory at the top of the heap that is kept for reuse rather than given back to the system
TRIM_THRESHOLD = 64 << 20


def admin_api(
    access: AccessSetup, audit_log: AuditLog | None = None, webhooks: WebhookAdmin | None = None,
    scrub: ScrubRecords | None = None, collector: Collector | None = None, mirrors: Mirrors | None = None,
) -> AdminApi | None:
    """The administration API over cargohold's own accounts (None without them)."""
    own = access.tokens
    if own is None:
        return None
    return AdminApi(own.store, own.login, own.verifier, own.issuer, audit_log, webhooks, scrub, collector, mirrors)


def endpoint_routes(access: AccessSetup, admin: AdminApi | None) -> list[Route]:
    """The token and admin endpoints' routes, with cargohold's own token service."""
    if access.tokens is None or admin is None:
        return []
    return [*TokenEndpoint(access.tokens.service).routes(), *admin.routes()]


def webhook_delivery(
    config: ServerConfig, meta: MetadataStore, activity: Activity,
) -> tuple[Endpoints, DeliveryLoop]:
    """The recorder's targets (which endpoints hear of an event) and this process's delivery loop."""
    endpoints = Endpoints(config.notifications.endpoints, meta)
    loop = DeliveryLoop(meta, endpoints, Sender(), Links.of(config), Source.of(config), holder=holder_id(),
                        backoff_max=config.notifications.backoff_max_seconds, activity=activity)
    return endpoints, loop


def metrics_routes(config: ServerConfig, meta: MetadataStore, metrics: Metrics) -> list[Route]:
    """``/metrics`` on the main port, when it is there and not on a listener of its own."""
    if config.metrics.token_file is None:
        return []
    from ..metrics.directory import ENV, directory_for
    from ..metrics.endpoint import Backlog, MetricsEndpoint, read_token

    try:
        token = read_token(config.metrics.token_file)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"metrics.token_file: {exc}") from None
    directory = os.environ.get(ENV) or directory_for(config.server.port, config.data_dir)
    return MetricsEndpoint(directory, metrics, Backlog(meta), token).routes()


def create_app(config: ServerConfig) -> RegistryApp:
    """The composition root: the stores, the service over them, access control, the API."""
    os.makedirs(config.data_dir, exist_ok=True)
    metrics = Metrics() if config.metrics.enabled else None
    activate(metrics)
    meta = open_metadata_store(config.metadata_url)
    blobs = open_blob_store(config.storage.driver, config.storage.driver_options(config.data_dir), meta)
    if metrics is not None:
        from ..metrics.store import time_operations

        blobs = time_operations(blobs, metrics)
    app_class = traced(config, meta, blobs) if config.tracing.endpoint else RegistryApp
    options = RegistryOptions(
        delete_enabled=config.server.delete_enabled,
        read_only=config.server.read_only,
        max_manifest_size=config.server.max_manifest_size,
        upload_max_age_seconds=config.server.upload_max_age_seconds,
    )
    # each event's deliveries are written with it, to the endpoints that want it
    activity = Activity()
    targets, deliveries = webhook_delivery(config, meta, activity)
    recorder = Recorder(targets, reads=meta, blob_pulls=config.audit.record_blob_pulls)
    access = build_access(config, meta)
    try:
        schema1_key = schema1_signing_key(config)
    except (KeyFileError, OSError) as exc:
        raise ConfigError(str(exc)) from None
    pulls = PullTimes(meta, config.server.pull_times_flush_seconds)
    local_name: Callable[[str, bytes], str] | None = None
    registry: Registry
    if config.proxies:  # else a plain registry: no proxy code on any request
        registry = proxying_registry(config.proxies, blobs, meta, options, holder_id(), schema1_key, recorder, pulls)
        local_name = ProxyRoutes(config.proxies).local_name
    else:
        registry = Registry(blobs, meta, options, schema1_key, recorder, pulls)
    audit_purge = audit_purge_job(meta, config.audit.retention_days)
    delivery = [deliveries.job()] if config.notifications.deliver else []
    sweep = sweep_job(blobs) if isinstance(blobs, Sweeper) else None  # a store a crash can leave objects in
    retention = retention_job(Retention(meta, registry.manifests, config.effective_retention))
    scrub = scrub_job(Scrubber(blobs, meta), config.scrub.interval_seconds, config.scrub.sample_size) \
        if config.scrub.enabled else None
    collector = open_collector(config, meta, blobs)
    collect = gc_job(collector, config.gc.seconds("interval")) if config.gc.enabled else None
    optional = [job for job in (audit_purge, sweep, retention, scrub, collect) if job is not None]
    mirrors = Mirrors(meta, LocalRegistry.of(config, access.tokens.service.key if access.tokens else None))
    jobs = JobRunner([*registry_jobs(registry, meta), *optional, usage_job(meta), mirrors.job(), *delivery], meta)
    registry.add_check("jobs", jobs.check_leases)
    webhooks = WebhookAdmin(config.notifications.endpoints, meta, deliveries.links, deliveries.source)
    admin = admin_api(access, meta, webhooks, meta, collector, mirrors)
    routes = endpoint_routes(access, admin)
    if metrics is not None:
        routes += metrics_routes(config, meta, metrics)
    routes += ui_routes(config, registry, access.tokens, admin)  # /ui/: its own sessions, after the API's routes
    return app_class(registry, access.controller, routes, jobs, recorder, activity, pulls, local_name, metrics)


def traced(config: ServerConfig, meta: MetadataStore, blobs: BlobStore) -> type[RegistryApp]:
    """Trace the requests, the blob store's operations and the metadata queries (loads opentelemetry)."""
    from ..metadata.sql_registry import SqlMetadataStore
    from ..tracing import start_tracing, trace_blob_store, trace_database, traced_app

    tracer = start_tracing(config.tracing)
    trace_blob_store(blobs, tracer)
    if isinstance(meta, SqlMetadataStore):
        dialect = database_for(config.metadata_url).dialect
        trace_database(meta.database, tracer, "postgresql" if dialect == "postgres" else dialect)
    return traced_app(tracer)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger("cargohold")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def tune_allocator() -> None:
    """Set glibc's malloc for a server: large blocks given back, smaller ones reused, one arena (Linux).

    - The mmap threshold is fixed, so that every block of :data:`MMAP_THRESHOLD` or more is its own mapping,
      unmapped when freed. Left to itself glibc raises the threshold (up to 32 MiB) each time a mapped block is
      freed; from then on an upload's buffers (S3 parts of 16 MiB, granian's 2 MiB reads) come from heaps that
      keep their pages: pushing 1 GiB to S3 left each worker about 100 MB larger, and the next push larger
      again.
    - Smaller blocks are kept for reuse up to :data:`TRIM_THRESHOLD` of free heap, in one arena for every
      thread. A pull-through fetch receives its upstream's bytes in a worker thread and the event loop's thread
      frees them once sent; with an arena per thread and the heap trimmed at 128 KiB free, nearly every page
      received into was a fresh one: a cold pull of 64 layers of 4 MiB faulted in 66,000 pages, 27,000 with
      these settings (the cache's CPU ~1.05 -> ~0.85 s). Manifest GETs, blob HEADs, uploads and the resident
      size measured the same either way.

    The arena count holds only if set before a second thread first allocates: ``serve`` calls this first
    thing, and each worker again (they inherit it when forked).
    """
    if not sys.platform.startswith("linux"):
        return
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        for parameter, value in ((_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
                                 (_M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
            mallopt(parameter, value)


def term_with_parent() -> None:
    """Have the kernel send this process SIGTERM when its parent ends (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def end_with_server_process(grace_seconds: float) -> None:
    """Have this worker stop when the server process ends (Linux).

    granian forks the workers and stops them when it shuts down cleanly; a server
    process that is killed, or stopped while a worker is still starting, would leave
    that worker serving with no parent, holding the port. The kernel sends SIGTERM
    when the parent ends; a worker still starting can miss it (granian installs its
    handlers later), so a watcher thread also notices the parent is gone, asks again
    until the worker stops, and kills it once ``grace_seconds`` (the shutdown timeout)
    have passed. A worker that had not finished starting holds no request: it is
    killed at once.
    """
    if not sys.platform.startswith("linux"):
        return
    term_with_parent()
    server = os.environ.get(SERVER_PID_ENV)
    if server is not None:
        threading.Thread(
            target=_watch_server, args=(int(server), grace_seconds), name="server-watch", daemon=True
        ).start()


#: how often a worker looks whether the server process is still its parent
_WATCH_INTERVAL_SECONDS = 0.5


#: this worker's app, once built (the watcher asks it whether it is serving yet)
_app: RegistryApp | None = None


def _watch_server(server_pid: int, grace_seconds: float) -> None:
    while os.getppid() == server_pid:
        time.sleep(_WATCH_INTERVAL_SECONDS)
    if _app is None or not _app.serving:  # nothing to drain; granian may swallow a SIGTERM while it starts
        os.kill(os.getpid(), signal.SIGKILL)
    # a stop asked for before granian's handlers took over is lost: ask until it is heard
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(_WATCH_INTERVAL_SECONDS)
    os.kill(os.getpid(), signal.SIGKILL)


def app_from_environment() -> RegistryApp:
    """Granian's factory target (in each worker): rebuild the app from the serialized configuration."""
    config = ServerConfig.from_json(os.environ[CONFIG_ENV])
    end_with_server_process(config.server.shutdown_timeout_seconds)
    tune_allocator()
    watch_for_drain()
    configure_logging(config.server.log_level)
    global _app
    try:
        _app = create_app(config)
        return _app
    except SchemaError as exc:  # serve migrates before it starts workers; refuse in one line, not a traceback
        print(f"cargohold: worker {os.getpid()}: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
