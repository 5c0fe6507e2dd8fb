"""The benchmark's ``edit`` phase: ``python -m bench --quick --phases edit``, tiny sizes, one run.

Not a timed test: it checks that the phase times every command both ways and that its check of the server's
access log (``bench/edit.py`` raises when a layer moved) tells layer traffic from the rest, not how big the
numbers are.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.requirements import requires_tool

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.run import Results  # noqa: E402

from bench import edit  # noqa: E402

pytestmark = [requires_tool(tool) for tool in ("docker-registry", "wrk", "hey", "nginx")]  # checked by bench/run.py

LAYER, CONFIG = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def test_layer_traffic_is_reads_of_layers_and_uploads_of_bytes() -> None:
    quiet = [
        {"method": "GET", "path": f"/v2/bench/edit/blobs/{CONFIG}"},  # the config is read
        {"method": "HEAD", "path": f"/v2/bench/edit/blobs/{LAYER}"},
        {"method": "POST", "path": "/v2/bench/edit/blobs/uploads/"},  # a mount, or the config in one POST
        {"method": "PUT", "path": "/v2/bench/edit/manifests/latest"},
    ]
    moving = [
        {"method": "GET", "path": f"/v2/bench/edit/blobs/{LAYER}"},
        {"method": "PATCH", "path": "/v2/bench/edit/blobs/uploads/abc"},
        {"method": "PUT", "path": "/v2/bench/edit/blobs/uploads/abc"},
    ]
    assert edit.layer_traffic(quiet + moving, {LAYER}) == moving


def test_render_gives_each_command_against_the_target() -> None:
    results = Results()
    for which, seconds in ((edit.MUTATE, 0.5), (edit.INDEX_SAME, 0.4), (edit.INDEX_OTHER, 1.2)):
        results.add("edit", edit.CLI, which, seconds)
        results.add("edit", edit.LIBRARY, which, seconds / 10)
    results.notes["edit"] = {"layers": 64, "layer_bytes": 4 << 20}
    text = "\n".join(edit.render(results))
    assert "64 layers of 4 MiB" in text
    assert f"| {edit.MUTATE} | 0.50 s | 0.05 s | command < 1 s | met |" in text
    assert f"| {edit.INDEX_OTHER} | 1.20 s | 0.12 s | command < 1 s | **not met** |" in text


def test_quick_edit_phase_times_every_command(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--phases", "edit", "--json", str(out),
         "--workdir", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    samples = json.loads(out.read_text())["samples"]["edit"]
    for way in (edit.CLI, edit.LIBRARY):
        assert set(samples[way]) == set(edit.COMMANDS), way
        assert all(v > 0 for values in samples[way].values() for v in values), way
    assert f"| {edit.INDEX_OTHER} |" in done.stdout and "command < 1 s" in done.stdout
    assert not any((tmp_path / "work").glob("**/layer-*")), "the image's files are removed"
