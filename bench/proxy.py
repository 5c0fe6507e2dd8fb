"""The ``proxy`` phase: pulls through cargohold's pull-through cache of a Distribution 2.8 upstream.

The upstream (``docker-registry``, filesystem) holds the clients phase's image: ``layers`` random layers of
``layer_size`` bytes (64 of 4 MiB), pushed once. Each run starts a cargohold of its own with an empty store and
a ``proxies:`` entry for the upstream (prefix ``up``), then pulls with our client (``cargohold pull``, as the
clients phase does), each pull into a new OCI layout with an empty blob cache:

- straight from the upstream, and through the cache while it is empty (cold), in alternating order;
- then, once the same image was pushed into cargohold under a name of its own (and pulled once, untimed), through
  the cache again (warm) and that pushed copy (direct), in alternating order;
- and, for reference, through nginx in front of the same upstream (started once, in rotating order with the
  straight and cold pulls): relaying only, and relaying while it writes each blob into a file (``proxy_store``).
  These are the floors of a hop and of a hop that stores, in C, on this machine: nginx neither verifies a digest,
  nor makes the file durable, nor records the blob anywhere, all of which the cache does before it keeps a blob.

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

A, UPSTREAM, NGINX = "cargohold", "distribution", "nginx"
PREFIX = "up"
#: the image's name on the upstream (pulled through the cache as ``up/bench/proxy``) and the pushed copy's
IMAGE, PUSHED = "bench/proxy", "bench/pushed"
#: the client of every pull (the clients phase's own)
PULLER = "cargohold"
STRAIGHT, COLD, WARM, DIRECT = "straight from upstream", "cache, cold", "cache, warm", "pushed into cargohold"
RELAY, RELAY_STORE = "nginx relaying", "nginx relaying and storing"
#: (numerator, denominator, most the ratio of their times may be)
TARGETS = ((COLD, STRAIGHT, 1.3), (WARM, DIRECT, 1.1))
#: (numerator, denominator) of the ratios shown for reference, with no target
REFERENCES = ((RELAY, STRAIGHT), (RELAY_STORE, STRAIGHT))
#: a GET of the access log's (combined format) that the upstream answered with content
_ACCESS = re.compile(r'"GET /v2/(?P<name>.+)/(?P<kind>blobs|manifests)/(?P<ref>[^ ?"]+)[^"]*" (?P<status>\d{3}) ')


def proxy_config(path: Path, upstream: Server) -> list[str]:
    """``serve``'s arguments for a cache of ``upstream`` under ``PREFIX`` (JSON is YAML)."""
    entry = {"prefix": PREFIX, "upstream": f"http://{upstream.address}", "revalidate": "5m"}
    path.write_text(json.dumps({"proxies": [entry]}))
    return ["--config", str(path)]


def nginx_sites(upstream: Server, store: Path | None) -> Callable[[Server], str]:
    """nginx's sites for a relay of ``upstream`` over kept-alive connections; with ``store``, one that also writes
    every blob it relays into a file under that folder (``proxy_store``: a temporary file, renamed when whole)."""
    def sites(server: Server) -> str:
        blobs = "proxy_buffering off;" if store is None else f"proxy_store on; create_full_put_path on; root {store};"
        return (f"  upstream registry {{ server {upstream.address}; keepalive 16; }}\n"
                "  proxy_http_version 1.1;\n"
                "  proxy_set_header Connection \"\";\n"
                f"  server {{\n    listen {server.address};\n"
                "    location / { proxy_pass http://registry; proxy_buffering off; }\n"
                f"    location ~ ^/v2/.+/blobs/ {{ proxy_pass http://registry; {blobs} }}\n"
                "  }\n")
    return sites


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
    stored = work / "nginx-store"
    relays = {RELAY: Server(NGINX, work / "relay", nginx_sites=nginx_sites(upstream, None)),
              RELAY_STORE: Server(NGINX, work / "relay-store", nginx_sites=nginx_sites(upstream, stored))}
    scratch = work / "scratch"
    total = sizes.layers * sizes.layer_size
    try:
        upstream.start()
        for relay in relays.values():
            relay.start()
        layout = make_layout(work / "image", sizes)
        blobs = sizes.layers + 1  # and the config
        workloads.client_push("cargohold", layout, upstream, IMAGE, scratch)
        config = proxy_config(work / "proxy.json", upstream)
        for run in range(runs):
            say(f"proxy: run {run + 1}/{runs}")
            cache = Server(A, work / "cache", extra_args=config).start()
            try:
                for which in _rotated([STRAIGHT, COLD, RELAY, RELAY_STORE], run):
                    shutil.rmtree(stored, ignore_errors=True)  # nginx stores into an empty folder, as the cache
                    _record(results, which, _pull(which, cache, upstream, scratch, blobs, relays), total)
                workloads.client_push("cargohold", layout, cache, PUSHED, scratch)
                # untimed: the first pull after the push was the slower of the pair in 8 of 10 runs, whichever it
                # was (the push's aftermath on this machine, not the path); it stays out of both measurements
                workloads.client_pull(PULLER, cache, PUSHED, scratch)
                for which in [WARM, DIRECT] if run % 2 == 0 else [DIRECT, WARM]:
                    _record(results, which, _pull(which, cache, upstream, scratch, blobs, relays), total)
            finally:
                cache.cleanup()
        results.notes["proxy"] = {"layers": sizes.layers, "layer_bytes": sizes.layer_size, "puller": PULLER}
    finally:
        for relay in relays.values():
            relay.cleanup()
        upstream.cleanup()
        shutil.rmtree(stored, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(work / "image", ignore_errors=True)


def _pull(
    which: str, cache: Server, upstream: Server, scratch: Path, blobs: int, relays: dict[str, Server],
) -> workloads.Timing:
    os.sync()  # as the clients phase does: the last push's (or pull's) writeback does not land in this pull
    settle()
    if which in relays:
        return workloads.client_pull(PULLER, relays[which], IMAGE, scratch)
    if which == STRAIGHT:
        return workloads.client_pull(PULLER, upstream, IMAGE, scratch)
    if which == DIRECT:
        return workloads.client_pull(PULLER, cache, PUSHED, scratch)
    return _through(cache, upstream, scratch, expect_blob_gets=blobs if which == COLD else 0)


def _rotated(order: list[str], run: int) -> list[str]:
    shift = run % len(order)
    return order[shift:] + order[:shift]


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
    """``cold/straight``, ``warm/direct`` and nginx's against straight: medians' ratios of the pull times."""
    data = results.samples.get("proxy", {}).get("pull_s", {})
    found = {}
    for top, bottom in [(top, bottom) for top, bottom, _ in TARGETS] + list(REFERENCES):
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
           f"from there. For reference, nginx in front of the same upstream: relaying, and relaying while it writes "
           f"each blob to a file (without verifying it or making it durable).\n",
           "| pull | time | rate | ratio | target | |", "|---|---|---|---|---|---|"]
    found = ratios(results)
    limits = {top: (bottom, limit) for top, bottom, limit in TARGETS}
    references = dict(REFERENCES)
    pulls = data.get("pull_s", {})
    for which in (STRAIGHT, COLD, WARM, DIRECT, RELAY, RELAY_STORE):
        if which not in pulls:
            continue
        ratio_cell = target_cell = status = ""
        if which in limits:
            bottom, limit = limits[which]
            ratio = found.get(f"{which} / {bottom}")
            target_cell = f"≤ {limit:g}× {bottom}"
            if ratio is not None:
                ratio_cell = f"{ratio:.2f}×"
                status = "met" if ratio <= limit else "**not met**"
        elif which in references:
            ratio = found.get(f"{which} / {references[which]}")
            ratio_cell = "" if ratio is None else f"{ratio:.2f}×"
            target_cell = f"(reference: × {references[which]})"
        out.append(f"| {which} | {cell(pulls.get(which), 's')} | {cell(data['pull_mbps'].get(which), 'MB/s')} "
                   f"| {ratio_cell} | {target_cell} | {status} |")
    return out
