"""The benchmark's ``gc`` phase still runs: ``python -m bench --quick --phases gc``, tiny sizes, one run.

Not a timed test: it checks that the phase measures both sides and that the collections it starts delete
every blob it made (``bench/gc.py`` raises otherwise), not how big the numbers are.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.requirements import requires_tool

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [requires_tool(tool) for tool in ("docker-registry", "wrk", "hey", "nginx")]  # checked by bench/run.py


def test_quick_gc_phase_reports_with_and_without(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--phases", "gc", "--json", str(out),
         "--workdir", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    samples, notes = results["samples"], results["notes"]["gc"]
    for metric in ("manifest_get", "upload_monolithic"):
        assert set(samples["gc"][metric]) == {"during a collection", "without"}, metric
        assert all(v > 0 for values in samples["gc"][metric].values() for v in values), metric
        assert 0 < notes["overlap"][metric][0] <= 1, metric
    assert notes["scale_blobs"] >= 2000
    assert samples["gc_scale"]["blobs_per_s"]["cargohold"][0] > 0
    assert "| Manifest GET by tag, 32 connections |" in done.stdout
    assert "Collecting 2,00" in done.stdout
    assert not any((tmp_path / "work").glob("**/*.bin")), "big temporary files are removed"
