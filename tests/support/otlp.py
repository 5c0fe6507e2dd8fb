"""A real OTLP/HTTP trace receiver on a free loopback port: it decodes each posted export request with
opentelemetry-proto's classes (protobuf, gzip or not) and keeps the spans, as a collector would get them."""

from __future__ import annotations

import gzip
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    attributes: dict[str, Any]


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class OtlpReceiver:
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.posts: list[str] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                with receiver._lock:
                    receiver.posts.append(f"{self.path} {self.headers.get('content-type')}")
                if self.path != "/v1/traces" or self.headers.get("content-type") != "application/x-protobuf":
                    self.send_response(404)
                    self.end_headers()
                    return
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver._keep(request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp receiver", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _keep(self, request: ExportTraceServiceRequest) -> None:
        found = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(ReceivedSpan(
                        str(resource.get("service.name")), span.trace_id.hex(), span.span_id.hex(),
                        span.parent_span_id.hex(), span.name, span.kind,
                        {a.key: _value(a.value) for a in span.attributes},
                    ))
        with self._lock:
            self.spans.extend(found)

    def wait_for(self, name: str, timeout: float = 10.0, **attributes: Any) -> ReceivedSpan:
        """The first span named ``name`` with these attributes, once it has been received."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                for span in self.spans:
                    if span.name == name and all(span.attributes.get(k) == v for k, v in attributes.items()):
                        return span
            if time.monotonic() > deadline:
                raise AssertionError(f"no span {name} {attributes} within {timeout} s: {self.names()}")
            time.sleep(0.05)

    def children(self, parent: ReceivedSpan) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == parent.trace_id and s.parent_id == parent.span_id]

    def names(self) -> list[str]:
        with self._lock:
            return [span.name for span in self.spans]
