"""Folding the files of ended processes into the archive: totals kept, live gauges of the dead dropped, the
living's files left alone."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from cargohold.metrics.archive import fold_dead


def _dead(count: int) -> list[int]:
    with open("/proc/sys/kernel/pid_max") as f:
        top = int(f.read())
    return list(range(top + 1, top + 1 + count))


def _write(path: Path, values: dict[str, float]) -> None:
    mapped = MmapedDict(str(path))
    try:
        for key, value in values.items():
            mapped.write_value(key, value, 0.0)
    finally:
        mapped.close()


def _scrape(directory: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


COUNTER = mmap_key("c", "c_total", ["op"], ["stat"], "")
BUCKET = mmap_key("h", "h_bucket", ["le"], ["0.5"], "")
BUCKET_INF = mmap_key("h", "h_bucket", ["le"], ["+Inf"], "")
SUM = mmap_key("h", "h_sum", [], [], "")
LIVE = mmap_key("g", "g", [], [], "")


def test_folding_keeps_totals_and_drops_the_dead_live_gauges(tmp_path: Path) -> None:
    dead = _dead(5)
    for pid in dead:
        _write(tmp_path / f"counter_{pid}.db", {COUNTER: 2.0})
        _write(tmp_path / f"histogram_{pid}.db", {BUCKET: 1.0, BUCKET_INF: 1.0, SUM: 0.25})
        _write(tmp_path / f"gauge_livesum_{pid}.db", {LIVE: 3.0})
    living = os.getpid()
    _write(tmp_path / f"counter_{living}.db", {COUNTER: 1.0})
    _write(tmp_path / f"gauge_livesum_{living}.db", {LIVE: 1.0})
    before = _scrape(tmp_path)
    assert before[("g", ())] == 16

    assert fold_dead(str(tmp_path)) == 15
    after = _scrape(tmp_path)
    assert after[("c_total", (("op", "stat"),))] == before[("c_total", (("op", "stat"),))] == 11
    assert after[("h_bucket", (("le", "0.5"),))] == 5 and after[("h_bucket", (("le", "+Inf"),))] == 10
    assert after[("h_sum", ())] == before[("h_sum", ())] == 1.25
    assert after[("g", ())] == 1
    assert sorted(os.listdir(tmp_path)) == sorted([
        "archive.lock", "counter_archive.db", "histogram_archive.db", f"counter_{living}.db",
        f"gauge_livesum_{living}.db"])

    # the next ended process adds to the archive; nothing to fold: nothing changes
    _write(tmp_path / f"counter_{dead[0]}.db", {COUNTER: 4.0})
    assert fold_dead(str(tmp_path)) == 1
    assert fold_dead(str(tmp_path)) == 0
    assert _scrape(tmp_path)[("c_total", (("op", "stat"),))] == 15
