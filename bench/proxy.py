"""The ``proxy`` phase: pulls through cargohold's pull-through cache of a Distribution 2.8 upstream.

The upstream (``docker-registry``, filesystem) holds the clients phase's image: ``layers`` random layers of
``layer_size`` bytes (64 of 4 MiB), pushed once. Each run starts a cargohold of its own with an empty store and
a ``proxies:`` entry for the upstream (prefix ``up``), then pulls with our client (``cargohold pull``, as the
clients phase does), each pull into a new OCI layout with an empty blob cache:

- straight from the upstream, and through the cache while it is empty (cold), in alternating order;
- then, once the same image was pushed into cargohold under a name of its own (and pulled once, untimed), through
  the cache again (warm) and that pushed copy (direct), in alternating order.

The cold pull runs before the push: the push would otherwise store the layers and the cache would only link
them. Targets: warm within 10% of direct (warm ÷ direct ≤ 1.1), cold at most 1.3 times straight from the
upstream. The upstream's access log is read after every pull through the cache: a cold pull must GET each
blob from it exactly once, a warm one none (otherwise the phase fails: it would not be measuring a cache).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from . import images, workloads
from .servers import Server, settle
from .table import cell
from .workloads import Sizes

if TYPE_CHECKING:
    from .run import Results

A, UPSTREAM = "cargohold", "distribution"
PREFIX = "up"
#: the image's name on the upstream (pulled through the cache as ``up/bench/proxy``) and the pushed copy's
IMAGE, PUSHED = "bench/proxy", "bench/pushed"
#: the client of every pull (the clients phase's own)
PULLER = "cargohold"
STRAIGHT, COLD, WARM, DIRECT = "straight from upstream", "cache, cold", "cache, warm", "pushed into cargohold"
#: (numerator, denominator, most the ratio of their times may be)
TARGETS = ((COLD, STRAIGHT, 1.3), (WARM, DIRECT, 1.1))
#: a GET of the access log's (combined format) that the upstream answered with content
_ACCESS = re.compile(r'"GET /v2/(?P<name>.+)/(?P<kind>blobs|manifests)/(?P<ref>[^ ?"]+)[^"]*" (?P<status>\d{3}) ')


def proxy_config(path: Path, upstream: Server) -> list[str]:
    """``serve``'s arguments for a cache of ``upstream`` under ``PREFIX`` (JSON is YAML)."""
    entry = {"prefix": PREFIX, "upstream": f"http://{upstream.address}", "revalidate": "5m"}
    path.write_text(json.dumps({"proxies": [entry]}))
    return ["--config", str(path)]


def upstream_gets(upstream: Server, repository: str = IMAGE) -> Counter[tuple[str, str]]:
    """The GETs of ``repository`` the upstream answered 200 so far, by (blobs|manifests, digest or tag)."""
    found: Counter[tuple[str, str]] = Counter()
    for line in (upstream.workdir / "server.log").read_text(errors="replace").splitlines():
        match = _ACCESS.search(line)
        if match and match["name"] == repository and match["status"] == "200":
            found[(match["kind"], match["ref"])] += 1
    return found


def make_layout(folder: Path, sizes: Sizes) -> Path:
    """The clients phase's many-layer image, as an OCI layout."""
    folder.mkdir(parents=True, exist_ok=True)
    layers = []
    for i in range(sizes.layers):
        path = folder / f"layer-{i}"
        layers.append((path, images.random_file(path, sizes.layer_size)))
    layout = folder / "layout"
    images.write_layout(layout, "latest", layers, "proxy")
    return layout


def phase_proxy(work: Path, sizes: Sizes, runs: int, results: Results, say: Callable[[str], None]) -> None:
    work.mkdir(parents=True, exist_ok=True)
    upstream = Server(UPSTREAM, work / "upstream")
    scratch = work / "scratch"
    total = sizes.layers * sizes.layer_size
    try:
        upstream.start()
        layout = make_layout(work / "image", sizes)
        blobs = sizes.layers + 1  # and the config
        workloads.client_push("cargohold", layout, upstream, IMAGE, scratch)
        config = proxy_config(work / "proxy.json", upstream)
        for run in range(runs):
            say(f"proxy: run {run + 1}/{runs}")
            cache = Server(A, work / "cache", extra_args=config).start()
            try:
                for which in [STRAIGHT, COLD] if run % 2 == 0 else [COLD, STRAIGHT]:
                    _record(results, which, _pull(which, cache, upstream, scratch, blobs), total)
                workloads.client_push("cargohold", layout, cache, PUSHED, scratch)
                # untimed: the first pull after the push was the slower of the pair in 8 of 10 runs, whichever it
                # was (the push's aftermath on this machine, not the path); it stays out of both measurements
                workloads.client_pull(PULLER, cache, PUSHED, scratch)
                for which in [WARM, DIRECT] if run % 2 == 0 else [DIRECT, WARM]:
                    _record(results, which, _pull(which, cache, upstream, scratch, blobs), total)
            finally:
                cache.cleanup()
        results.notes["proxy"] = {"layers": sizes.layers, "layer_bytes": sizes.layer_size, "puller": PULLER}
    finally:
        upstream.cleanup()
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(work / "image", ignore_errors=True)


def _pull(which: str, cache: Server, upstream: Server, scratch: Path, blobs: int) -> workloads.Timing:
    os.sync()  # as the clients phase does: the last push's (or pull's) writeback does not land in this pull
    settle()
    if which == STRAIGHT:
        return workloads.client_pull(PULLER, upstream, IMAGE, scratch)
    if which == DIRECT:
        return workloads.client_pull(PULLER, cache, PUSHED, scratch)
    return _through(cache, upstream, scratch, expect_blob_gets=blobs if which == COLD else 0)


def _through(cache: Server, upstream: Server, scratch: Path, expect_blob_gets: int) -> workloads.Timing:
    """A pull of the upstream's image through the cache; checks how many blobs the upstream served for it."""
    before = upstream_gets(upstream)
    timing = workloads.client_pull(PULLER, cache, f"{PREFIX}/{IMAGE}", scratch)
    fetched = upstream_gets(upstream) - before
    blob_gets = {ref: n for (kind, ref), n in fetched.items() if kind == "blobs"}
    if sum(blob_gets.values()) != expect_blob_gets or any(n != 1 for n in blob_gets.values()):
        raise RuntimeError(f"the pull through the cache made the upstream serve {blob_gets} "
                           f"({expect_blob_gets} blobs, each once, expected)")
    return timing


def _record(results: Results, which: str, timing: workloads.Timing, total: int) -> None:
    results.add("proxy", "pull_s", which, timing.seconds)
    results.add("proxy", "pull_mbps", which, total / timing.seconds / 1e6)


def ratios(results: Results) -> dict[str, float]:
    """``cold/straight`` and ``warm/direct``: medians' ratios of the pull times."""
    data = results.samples.get("proxy", {}).get("pull_s", {})
    found = {}
    for top, bottom, _ in TARGETS:
        if data.get(top) and data.get(bottom):
            found[f"{top} / {bottom}"] = statistics.median(data[top]) / statistics.median(data[bottom])
    return found


def render(results: Results) -> list[str]:
    data = results.samples.get("proxy", {})
    notes = results.notes.get("proxy")
    if not data or not isinstance(notes, dict):
        return []
    out = [f"\n### Pulls through the pull-through cache of a Distribution 2.8 upstream\n\n"
           f"{notes['layers']} layers of {notes['layer_bytes'] / 2**20:g} MiB, pulled with `{notes['puller']} pull` "
           f"into a new OCI layout each time. Cold: the cache's first pull (the upstream served each blob once); "
           f"warm: its second (the upstream served none); pushed: the same image pushed into cargohold and pulled "
           f"from there.\n",
           "| pull | time | rate | ratio | target | |", "|---|---|---|---|---|---|"]
    found = ratios(results)
    limits = {top: (bottom, limit) for top, bottom, limit in TARGETS}
    for which in (STRAIGHT, COLD, WARM, DIRECT):
        ratio_cell = target_cell = status = ""
        if which in limits:
            bottom, limit = limits[which]
            ratio = found.get(f"{which} / {bottom}")
            target_cell = f"≤ {limit:g}× {bottom}"
            if ratio is not None:
                ratio_cell = f"{ratio:.2f}×"
                status = "met" if ratio <= limit else "**not met**"
        out.append(f"| {which} | {cell(data['pull_s'].get(which), 's')} | {cell(data['pull_mbps'].get(which), 'MB/s')} "
                   f"| {ratio_cell} | {target_cell} | {status} |")
    return out
