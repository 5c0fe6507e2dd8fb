"""Counts batched in memory come out as prometheus-client's own metrics would have counted them one by one."""

from __future__ import annotations

from prometheus_client import Counter, Histogram
from prometheus_client.samples import Sample

from cargohold.metrics.batched import Batches, Tally, Timings
from cargohold.metrics.families import REQUEST_BUCKETS
from cargohold.metrics.recorder import Metrics

SECONDS = [0.0, 0.0004, 0.001, 0.0011, 0.003, 0.02, 0.02, 0.7, 2.5, 9.0, 61.0, 1e9]


def samples(metric: Counter | Histogram) -> list[Sample]:
    return sorted((s for family in metric.collect() for s in family.samples if not s.name.endswith("_created")),
                  key=lambda s: (s.name, sorted(s.labels.items())))


def test_timings_flush_to_the_buckets_observe_would_fill() -> None:
    direct = Histogram("t", "t", ["op"], buckets=REQUEST_BUCKETS, registry=None)
    batched = Histogram("t", "t", ["op"], buckets=REQUEST_BUCKETS, registry=None)
    timings = Timings(lambda: batched, REQUEST_BUCKETS)
    for i, seconds in enumerate(SECONDS):
        op = "stat" if i % 3 else "read"
        direct.labels(op).observe(seconds)
        timings.observe((op,), seconds)
    assert samples(batched) != samples(direct)  # nothing written before the flush
    timings.flush()
    assert samples(batched) == samples(direct)
    timings.flush()  # nothing held: nothing written twice
    assert samples(batched) == samples(direct)


def test_tallies_and_unlabelled_metrics() -> None:
    direct = Counter("c", "c", registry=None)
    batched = Counter("c", "c", registry=None)
    tally = Tally(lambda: batched)
    for amount in (1, 2.5, 1):
        direct.inc(amount)
        tally.add((), amount)
    Batches([tally]).flush()
    assert samples(batched) == samples(direct)


def test_requests_count_by_template_and_a_method_outside_the_list_as_other() -> None:
    metrics = Metrics()
    route = "/v2/{name}/manifests/{reference}"
    for status, seconds in ((200, 0.002), (200, 0.3), (404, 0.001)):
        metrics.requests.add("GET", route, status, 0, 100, seconds)
    metrics.requests.add("BREW", "other", 404, 7, 10, 0.001)
    metrics.batches.flush()
    families = metrics.families()
    assert families.requests.labels("GET", route, "200")._value.get() == 2
    assert families.requests.labels("GET", route, "404")._value.get() == 1
    assert families.requests.labels("other", "other", "404")._value.get() == 1
    assert families.response_bytes.labels("GET", route)._value.get() == 300
    assert families.request_bytes.labels("other", "other")._value.get() == 7
    histogram = {s.labels.get("le"): s.value for s in samples(families.request_seconds)
                 if s.labels["method"] == "GET" and s.name.endswith("_bucket")}
    assert (histogram["0.001"], histogram["0.0025"], histogram["0.25"], histogram["0.5"], histogram["+Inf"]) == (
        1, 2, 2, 3, 3)
