"""OpenTelemetry tracing, when ``tracing.endpoint`` is set: a span per request named by its route (a child
of the caller's span when the request carries W3C ``traceparent``), with a child span per blob store
operation and per metadata query, exported with OTLP over HTTP (protobuf).

Imported only then: without it neither this module nor opentelemetry is loaded, and requests do no work
for it. The stores' operations are wrapped on the objects (:mod:`cargohold.instrument`), with metrics'
timing when both are on.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterable, MutableMapping
from typing import Any, Final

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagate import extract
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, StatusCode, Tracer

from .api.app import RegistryApp
from .config.sections import TracingSection
from .http import Receive, Scope, Send
from .instrument import wrap_operations

#: the blob store's operations that get a span (each store has those of its optional protocols it offers)
BLOB_OPERATIONS: Final = (
    "check", "stat", "read", "delete", "upload_start", "upload_lock", "upload_writer", "upload_sync",
    "upload_commit", "upload_delete", "upload_ids", "upload_read", "redirect_url", "delete_key", "sweep",
)
#: the SQL database's statements (every metadata query goes through one of them)
DB_OPERATIONS: Final = ("fetchone", "fetchall", "write", "write_many")


def start_tracing(section: TracingSection) -> Tracer:
    """This process's tracer, its spans sent in batches to ``section.endpoint``."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": section.service_name}),
        sampler=ParentBased(TraceIdRatioBased(section.sample_ratio)),
    )
    exporter = OTLPSpanExporter(endpoint=f"{section.endpoint.rstrip('/')}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider.get_tracer("cargohold")


def traced_app(tracer: Tracer) -> type[RegistryApp]:
    """:class:`RegistryApp` with a server span around each request (its route template as name)."""

    class TracedRegistryApp(RegistryApp):
        async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
            method = scope["method"]
            found = self.router.match(scope["path"])
            route = found[0].template if found else None
            status = 0

            async def sending(message: MutableMapping[str, Any]) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            caller = extract({name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]})
            with tracer.start_as_current_span(
                f"{method} {route or 'unmatched'}", context=caller, kind=SpanKind.SERVER,
            ) as span:
                span.set_attribute("http.request.method", method)
                if route is not None:
                    span.set_attribute("http.route", route)
                await super()._http(scope, receive, sending)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(StatusCode.ERROR)

    return TracedRegistryApp


def trace_blob_store(store: object, tracer: Tracer) -> None:
    """A span ``blobs <operation>`` around each of the store's operations."""
    _trace_methods(store, BLOB_OPERATIONS, tracer, lambda name, args: f"blobs {name}", {})


def trace_database(db: object, tracer: Tracer, system: str) -> None:
    """A span ``db <SELECT|INSERT|...>`` around each statement, with its text (never its values)."""

    def name(operation: str, args: tuple[Any, ...]) -> str:
        text = str(args[0]) if args else ""
        return f"db {text.split(None, 1)[0].upper() if text.strip() else operation}"

    _trace_methods(db, DB_OPERATIONS, tracer, name, {"db.system": system}, statement=True)


def _trace_methods(
    target: object, names: Iterable[str], tracer: Tracer, span_name: Callable[[str, tuple[Any, ...]], str],
    attributes: dict[str, str], statement: bool = False,
) -> None:
    wrap_operations(
        target, names,
        lambda name, call: _traced_coroutine(call, name, tracer, span_name, attributes, statement),
        lambda name, stream: _traced_generator(stream, name, tracer, span_name, attributes))


def _traced_coroutine(
    original: Callable[..., Any], name: str, tracer: Tracer, span_name: Callable[[str, tuple[Any, ...]], str],
    attributes: dict[str, str], statement: bool,
) -> Callable[..., Any]:
    @functools.wraps(original)
    async def method(*args: Any, **kwargs: Any) -> Any:
        with tracer.start_as_current_span(span_name(name, args), kind=SpanKind.CLIENT, attributes=attributes) as span:
            if statement and args:
                span.set_attribute("db.query.text", str(args[0]))
            return await original(*args, **kwargs)

    return method


def _traced_generator(
    original: Callable[..., AsyncIterator[Any]], name: str, tracer: Tracer,
    span_name: Callable[[str, tuple[Any, ...]], str], attributes: dict[str, str],
) -> Callable[..., AsyncIterator[Any]]:
    @functools.wraps(original)
    async def method(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        # not made current: a generator may be closed in another context than the one it started in
        span = tracer.start_span(span_name(name, args), kind=SpanKind.CLIENT, attributes=attributes)
        try:
            async for item in original(*args, **kwargs):
                yield item
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(StatusCode.ERROR)
            raise
        finally:
            span.end()

    return method
