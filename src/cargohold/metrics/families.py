"""The metric families. Built in a worker on first use, never in the serve process (whose files would
stay for its whole life), and registered nowhere: ``/metrics`` reads the shared files, not a registry."""

from __future__ import annotations

from typing import Final

#: request durations: a manifest GET takes about a millisecond, a large blob minutes
REQUEST_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: database statements and blob store operations
OPERATION_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                            2.5, 5.0, 10.0)


class Families:
    def __init__(self) -> None:
        # imported here: prometheus-client picks its multiprocess mode when first imported, which must be
        # after serve names the directory (:mod:`.directory`), and the app imports this module before
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter(
            "cargohold_http_requests", "HTTP requests by method, route template and status code",
            ["method", "route", "code"], registry=None)
        self.request_seconds = Histogram(
            "cargohold_http_request_duration_seconds", "Time to answer an HTTP request, by route template",
            ["method", "route"], buckets=REQUEST_BUCKETS, registry=None)
        self.request_bytes = Counter(
            "cargohold_http_request_bytes", "Request body bytes received", ["method", "route"], registry=None)
        self.response_bytes = Counter(
            "cargohold_http_response_bytes", "Response bytes sent", ["method", "route"], registry=None)
        self.uploads = Gauge(
            "cargohold_uploads_in_progress", "Blob upload requests (PATCH, PUT, POST) sending their bodies now",
            multiprocess_mode="livesum", registry=None)
        self.storage_seconds = Histogram(
            "cargohold_storage_op_seconds", "Blob store operation durations", ["op"], buckets=OPERATION_BUCKETS,
            registry=None)
        self.storage_errors = Counter(
            "cargohold_storage_errors", "Blob store operations that failed", ["op"], registry=None)
        self.db_seconds = Histogram(
            "cargohold_db_query_seconds", "Metadata database statement durations", buckets=OPERATION_BUCKETS,
            registry=None)
        self.tokens = Counter(
            "cargohold_tokens", "Token requests by outcome (issued, refused)", ["outcome"], registry=None)
        self.login_failures = Counter("cargohold_login_failures", "Failed logins", registry=None)
        self.webhook_deliveries = Counter(
            "cargohold_webhook_deliveries", "Webhook delivery attempts by outcome (delivered, failed, dead)",
            ["outcome"], registry=None)
        self.gc_runs = Counter("cargohold_gc_runs", "Garbage collection runs", registry=None)
        self.gc_bytes_freed = Counter(
            "cargohold_gc_bytes_freed", "Bytes of blobs garbage collection deleted", registry=None)
        self.proxy_upstream = Counter(
            "cargohold_proxy_upstream_requests", "Requests a pull-through cache sent upstream, by status code",
            ["code"], registry=None)
        self.proxy_cache = Counter(
            "cargohold_proxy_cache", "Pull-through cache lookups by result (hit, miss)", ["result"], registry=None)
