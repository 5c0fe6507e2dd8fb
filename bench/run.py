"""Run the benchmark: cargohold against Distribution side by side, then print (and save) the table.

    python -m bench            # the full benchmark (about 15 minutes on 2 cores)
    python -m bench --quick    # tiny sizes, one run: checks that everything works

Each comparison starts both registries on loopback ports with fresh storage and
runs every workload against each in turn, alternating which goes first, so the
machine's drift hits both alike. Numbers are medians of the runs, with min and max.
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import http.server
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import edit, gc, images, metrics, proxy, s3, workloads
from .servers import SRC, Server, missing_tools
from .table import cell as _cell
from .workloads import Sizes

A, B = "cargohold", "distribution"
#: a static file server's floor for blob GETs: the same blob as a file, sent with sendfile
NGINX = "nginx"
#: the floor of a pull: bench/raw_pull.py, sockets and nothing else
RAW = "raw"
#: the scale-out phases (bench/s3.py) need PostgreSQL 15 and SeaweedFS, as the tests do; not run by default
S3_PHASES = ("s3", "pg-listings", "replicas")
PHASES = ("compare", "memory", "workers", "clients", "large", "events", "gc", "proxy", "edit", "metrics")


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool = True
    #: target for the ratio (cargohold/other for rates, other/cargohold for times)
    target: float | None = None


COMPARE = [
    Metric("upload_monolithic", "Blob upload, one monolithic PUT", "MB/s", target=2.5),
    Metric("upload_chunked", "Blob upload, chunked PATCHes", "MB/s", target=2.5),
    Metric("download", "Blob download (GET)", "MB/s", target=1.0),
    Metric("manifest_get", "Manifest GET by tag, 32 connections", "req/s", target=5.0),
    Metric("blob_head", "Blob HEAD, 32 connections", "req/s", target=5.0),
    Metric("tags_list", "Tags list (tags in one repository)", "req/s", target=1.0),
    Metric("catalog_page", "Catalog page (n=100)", "req/s", target=1.0),
    Metric("push_images", "Small images pushed with our client, 8 at a time", "s", higher_is_better=False,
           target=2.0),
]
WORKERS = [
    Metric("manifest_get", "Manifest GET by tag, 32 connections", "req/s"),
    Metric("blob_head", "Blob HEAD, 32 connections", "req/s"),
    Metric("upload_monolithic", "Blob upload, one monolithic PUT", "MB/s"),
    Metric("download", "Blob download (GET)", "MB/s"),
]
#: events on (one webhook endpoint hearing of everything, its receiver up) against off; a push with ten
#: endpoints against the same with their deliveries written but not sent (the outbox rows alone), and against
#: none. Targets: within 5%.
EVENTS_ON, EVENTS_OFF, TEN, HELD, NONE = "events on", "events off", "10 endpoints", "10 endpoints, not sending", \
    "no endpoint"
EVENTS = [
    Metric("manifest_get", "Manifest GET by tag, 32 connections", "req/s", target=0.95),
    Metric("blob_head", "Blob HEAD, 32 connections", "req/s", target=0.95),
]
EVENTS_PUSH = [
    Metric("push_images", "Small images pushed with our client, 8 at a time", "s", higher_is_better=False,
           target=0.95),
]
EVENTS_ROWS = [
    Metric("push_images", "Small images pushed with our client, 8 at a time", "s", higher_is_better=False),
]
#: serving while a collection of unreferenced blobs runs (bench/gc.py) against serving without one; within 10%
GC = [
    Metric("manifest_get", "Manifest GET by tag, 32 connections", "req/s", target=0.9),
    Metric("upload_monolithic", "Blob upload, one monolithic PUT", "MB/s", target=0.9),
]
#: metrics on (scraped every second) against off; target: within 3%
METRICS = [
    Metric("manifest_get", "Manifest GET by tag, 32 connections", "req/s", target=0.97),
    Metric("blob_head", "Blob HEAD, 32 connections", "req/s", target=0.97),
    Metric("manifest_get_cpu", "Server CPU per manifest GET", "µs", higher_is_better=False, target=0.97),
    Metric("blob_head_cpu", "Server CPU per blob HEAD", "µs", higher_is_better=False, target=0.97),
]
CLIENTS = [
    Metric("push_many", "Push, many small layers", "MB/s", target=2.0),
    Metric("pull_many", "Pull, many small layers", "MB/s", target=2.0),
    Metric("push_one", "Push, one big layer", "MB/s", target=2.0),
    Metric("pull_one", "Pull, one big layer", "MB/s", target=2.0),
]
CLIENTS_CPU = [Metric(f"{m.key}_cpu", m.label, "s", higher_is_better=False) for m in CLIENTS]


@dataclass
class Results:
    """Samples per (section, metric, subject)."""

    samples: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)
    notes: dict[str, object] = field(default_factory=dict)

    def add(self, section: str, metric: str, subject: str, value: float) -> None:
        self.samples.setdefault(section, {}).setdefault(metric, {}).setdefault(subject, []).append(value)


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def ordered(run: int, pair: list[Server]) -> list[Server]:
    """A/B on even runs, B/A on odd ones (A/B/C, C/B/A for three)."""
    return pair if run % 2 == 0 else pair[::-1]


def durable_rate(blob: images.Blob, started: float) -> float:
    """MB/s counting until the bytes are on disk: the upload plus a sync(2) after it.

    Kept in the JSON only: both registries fsync before answering 201 (the sync
    after it adds nothing measurable to either), so the table leaves it out.
    """
    os.sync()
    return blob.size / (time.perf_counter() - started) / 1e6


def fresh_big_file(path: Path, size: int) -> images.Blob:
    if path.exists() and path.stat().st_size == size:
        return images.refresh(path)
    return images.random_file(path, size)


# phases


def phase_compare(work: Path, sizes: Sizes, runs: int, results: Results) -> None:
    pair = [Server(A, work / A).start(), Server(B, work / B).start()]
    nginx = Server(NGINX, work / NGINX).start()
    pool: workloads.PushPool | None = None
    big = work / "big.bin"
    try:
        fixtures = {s.name: workloads.setup(s, sizes) for s in pair}
        layouts = workloads.make_small_layouts(work / "small", sizes.images, sizes.image_layer)
        pool = workloads.PushPool(sizes.image_parallel)
        for run in range(runs):
            say(f"compare: run {run + 1}/{runs}")
            last: dict[str, images.Blob] = {}
            fresh_big_file(big, sizes.big)
            results.add("compare", "disk_write", "machine", workloads.disk_write(big, work / "disk-probe.bin"))
            for server in ordered(run, pair):
                blob = fresh_big_file(big, sizes.big)
                os.sync()
                started = time.perf_counter()
                results.add("compare", "upload_monolithic", server.name, workloads.upload_monolithic(server, big, blob))
                results.add("compare", "upload_monolithic_synced", server.name, durable_rate(blob, started))
            for server in ordered(run, pair):
                blob = fresh_big_file(big, sizes.big)
                os.sync()
                started = time.perf_counter()
                results.add("compare", "upload_chunked", server.name,
                            workloads.upload_chunked(server, big, blob, sizes.chunk))
                results.add("compare", "upload_chunked_synced", server.name, durable_rate(blob, started))
                last[server.name] = blob
            # the last blob pushed is still in big.bin: nginx serves it at the same URL path
            nginx.publish(big, f"/v2/{workloads.BIG}/blobs/{last[ordered(run, pair)[-1].name].digest}")
            last[NGINX] = last[ordered(run, pair)[-1].name]
            os.sync()
            for _ in range(3):  # one GET takes under a second: three per run, alternating
                for server in ordered(run, [*pair, nginx]):
                    cpu = server.cpu_seconds()
                    results.add("compare", "download", server.name, workloads.download(server, last[server.name]))
                    results.add("compare", "download_cpu", server.name,
                                (server.cpu_seconds() - cpu) / (sizes.big / 2**30))
            rates: list[tuple[str, Callable[[Server], float]]] = [
                ("manifest_get", lambda s: workloads.manifest_get(s, sizes)),
                ("blob_head", lambda s: workloads.blob_head(s, sizes, fixtures[s.name])),
                ("tags_list", lambda s: workloads.tags_list(s, sizes)),
                ("catalog_page", lambda s: workloads.catalog_page(s, sizes)),
            ]
            for key, measure in rates:
                for server in ordered(run, pair):
                    results.add("compare", key, server.name, measure(server))
            for server in ordered(run, pair):
                seconds = pool.push_all(server, layouts, f"push/r{run}", work / "push-cache")
                results.add("compare", "push_images", server.name, seconds)
        results.notes["compare"] = {"big_bytes": sizes.big, "chunk_bytes": sizes.chunk, "tags": sizes.tags,
                                    "repositories": sizes.repos + 3, "images": sizes.images,
                                    "image_parallel": sizes.image_parallel, "duration_s": sizes.duration}
    finally:
        if pool is not None:
            pool.close()
        for server in (*pair, nginx):
            server.cleanup()
        big.unlink(missing_ok=True)
        shutil.rmtree(work / "small", ignore_errors=True)


class _Receiver(http.server.BaseHTTPRequestHandler):
    """A webhook receiver that takes everything (the events phase's endpoints)."""

    received = 0

    def do_POST(self) -> None:  # noqa: N802 - the handler's name is http.server's
        self.rfile.read(int(self.headers.get("content-length") or 0))
        type(self).received += 1
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _webhook_config(path: Path, url: str, endpoints: int, deliver: bool = True) -> list[str]:
    entries = [{"name": f"bench-{n}", "url": url, "actions": ["push", "pull", "delete", "mount"]}
               for n in range(endpoints)]
    path.write_text(json.dumps({"notifications": {"endpoints": entries, "deliver": deliver}}))  # JSON is YAML
    return ["--config", str(path)]


def phase_events(work: Path, sizes: Sizes, runs: int, results: Results) -> None:
    """Events on against off: pulls (every manifest GET is recorded and sent), and pushes with ten endpoints."""
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    work.mkdir(parents=True, exist_ok=True)
    servers = {
        EVENTS_OFF: Server(A, work / "events-off"),
        EVENTS_ON: Server(A, work / "events-on", extra_args=_webhook_config(work / "one.json", url, 1)),
        TEN: Server(A, work / "events-ten", extra_args=_webhook_config(work / "ten.json", url, 10)),
        HELD: Server(A, work / "events-held", extra_args=_webhook_config(work / "held.json", url, 10, False)),
    }
    labels = {id(server): label for label, server in servers.items()}
    pool: workloads.PushPool | None = None
    try:
        for server in servers.values():
            server.start()
        pair = [servers[EVENTS_ON], servers[EVENTS_OFF]]
        fixtures = {id(s): workloads.setup(s, sizes) for s in pair}
        layouts = workloads.make_small_layouts(work / "small", sizes.images, sizes.image_layer)
        pool = workloads.PushPool(sizes.image_parallel)
        for run in range(runs):
            say(f"events: run {run + 1}/{runs}")
            for server in ordered(run, pair):
                results.add("events", "manifest_get", labels[id(server)], workloads.manifest_get(server, sizes))
            for server in ordered(run, pair):
                results.add("events", "blob_head", labels[id(server)],
                            workloads.blob_head(server, sizes, fixtures[id(server)]))
            for server in ordered(run, [servers[TEN], servers[HELD], servers[EVENTS_OFF]]):
                label = NONE if server is servers[EVENTS_OFF] else labels[id(server)]
                seconds = pool.push_all(server, layouts, f"push/r{run}", work / "push-cache")
                results.add("events", "push_images", label, seconds)
        results.notes["events"] = {"webhook_posts": _Receiver.received}
    finally:
        if pool is not None:
            pool.close()
        for server in servers.values():
            server.cleanup()
        receiver.shutdown()
        shutil.rmtree(work / "small", ignore_errors=True)


def phase_memory(work: Path, sizes: Sizes, results: Results) -> None:
    path = work / "memory.bin"
    try:
        blob = images.random_file(path, sizes.memory_blob)
        for name in (A, B):
            server = Server(name, work / name).start()
            try:
                idle, _ = server.rss_bytes()
                peak = workloads.memory(server, path, blob)
                results.add("memory", "idle_rss", name, idle / 1e6)
                results.add("memory", "peak_rss", name, peak)
                results.add("memory", "peak_rss_process", name, workloads.LAST_PEAK_PROCESS[0])
            finally:
                server.cleanup()
        results.notes["memory"] = {"blob_bytes": sizes.memory_blob}
    finally:
        path.unlink(missing_ok=True)


def phase_workers(work: Path, sizes: Sizes, runs: int, results: Results) -> None:
    pair = [Server(A, work / "w1", extra_args=["--workers", "1"]),
            Server(A, work / "w2", extra_args=["--workers", "2"])]
    labels = {id(pair[0]): "1 worker", id(pair[1]): "2 workers"}
    big = work / "big.bin"
    try:
        for server in pair:
            server.start()
        fixtures = {id(s): workloads.setup(s, sizes) for s in pair}
        for run in range(runs):
            say(f"workers: run {run + 1}/{runs}")
            for server in ordered(run, pair):
                results.add("workers", "manifest_get", labels[id(server)], workloads.manifest_get(server, sizes))
            for server in ordered(run, pair):
                results.add("workers", "blob_head", labels[id(server)],
                            workloads.blob_head(server, sizes, fixtures[id(server)]))
            for server in ordered(run, pair):
                blob = fresh_big_file(big, sizes.big)
                os.sync()
                results.add("workers", "upload_monolithic", labels[id(server)],
                            workloads.upload_monolithic(server, big, blob))
                os.sync()
                results.add("workers", "download", labels[id(server)], workloads.download(server, blob))
    finally:
        for server in pair:
            server.cleanup()
        big.unlink(missing_ok=True)


def phase_clients(work: Path, sizes: Sizes, runs: int, results: Results) -> None:
    server = Server(A, work / A).start()
    scratch = work / "clients"
    scratch.mkdir(parents=True, exist_ok=True)
    big = scratch / "one.bin"
    tools = ["cargohold", "skopeo"]
    try:
        for run in range(runs):
            say(f"clients: run {run + 1}/{runs}")
            order = [*tools, RAW] if run % 2 == 0 else [RAW, *tools[::-1]]

            def many_layers(label: str) -> Path:
                layers = []
                for i in range(sizes.layers):
                    path = scratch / f"layer-{i}"
                    layers.append((path, images.random_file(path, sizes.layer_size)))
                layout = scratch / "many"
                shutil.rmtree(layout, ignore_errors=True)
                images.write_layout(layout, "latest", layers, label)
                return layout

            def one_layer(label: str) -> Path:
                blob = images.refresh(big) if big.exists() else images.random_file(big, sizes.one_layer)
                layout = scratch / "one"
                shutil.rmtree(layout, ignore_errors=True)
                images.write_layout(layout, "latest", [(big, blob)], label)
                return layout

            def keep_big(layout: Path) -> None:
                for path in (layout / "blobs" / "sha256").iterdir():
                    if path.stat().st_size == sizes.one_layer:
                        os.replace(path, big)

            _clients_round(server, scratch, many_layers, lambda _: None, "many", run,
                           sizes.layers * sizes.layer_size, order, results)
            if not big.exists():
                images.random_file(big, sizes.one_layer)
            results.add("clients", "disk_write", "machine", workloads.disk_write(big, scratch / "disk-probe.bin"))
            _clients_round(server, scratch, one_layer, keep_big, "one", run, sizes.one_layer, order, results)
        results.notes["clients"] = {"layers": sizes.layers, "layer_bytes": sizes.layer_size,
                                    "one_layer_bytes": sizes.one_layer}
    finally:
        server.cleanup()
        shutil.rmtree(scratch, ignore_errors=True)


def _clients_round(server: Server, scratch: Path, fresh: Callable[[str], Path], done: Callable[[Path], None],
                   kind: str, run: int, total: int, order: list[str], results: Results) -> None:
    """Each client (and the floor) pushes an image of its own, then each pulls what cargohold pushed.

    Every push has new content (``fresh``): a registry stores and fsyncs a blob only the
    first time it sees it, so a second push of the same bytes would do less work.
    """
    for tool in order:
        layout = fresh(f"{kind}-{tool}-{run}")
        os.sync()
        timing = workloads.client_push(tool, layout, server, f"clients/{kind}-{tool}-{run}", scratch)
        results.add("clients", f"push_{kind}", tool, total / timing.seconds / 1e6)
        results.add("clients", f"push_{kind}_cpu", tool, timing.cpu)
        done(layout)
        shutil.rmtree(layout, ignore_errors=True)
    for tool in order:
        os.sync()
        timing = workloads.client_pull(tool, server, f"clients/{kind}-cargohold-{run}", scratch)
        results.add("clients", f"pull_{kind}", tool, total / timing.seconds / 1e6)
        results.add("clients", f"pull_{kind}_cpu", tool, timing.cpu)


def phase_large(work: Path, sizes: Sizes, results: Results, with_distribution: bool, quota: str | None) -> None:
    names = [A, B] if with_distribution else [A]
    for name in names:
        server = Server(name, work / name).start()
        try:
            fixture = workloads.setup(server, Sizes(tags=0, repos=0))
            if quota is not None and name == A:  # every manifest PUT of the phase then checks and counts it
                workloads.set_quota(server, workloads.LARGE_NAMESPACE, quota)
            say(f"large: filling {name} with {sizes.large_tags} tags and {sizes.large_repos} repositories")
            seconds = workloads.populate_large(server, fixture, sizes)
            results.add("large", "populate_s", name, seconds)
            middle_tag = f"tag-{sizes.large_tags // 2:06d}"
            middle_repo = f"large/repo-{sizes.large_repos // 2:05d}"
            pages = {
                "tags_first_page": "/v2/large/tags/tags/list?n=100",
                "tags_middle_page": f"/v2/large/tags/tags/list?n=100&last={middle_tag}",
                "catalog_first_page": "/v2/_catalog?n=100",
                "catalog_middle_page": f"/v2/_catalog?n=100&last={middle_repo}",
            }
            for key, target in pages.items():
                found = workloads.page_latency(server, target, sizes.latency_samples)
                for stat, value in found.items():
                    results.add("large", f"{key}.{stat}", name, value)
        finally:
            server.cleanup()
    results.notes["large"] = {"tags": sizes.large_tags, "repositories": sizes.large_repos,
                              "samples": sizes.latency_samples, "quota": quota}


# reporting




def _ratio(metric: Metric, ours: list[float] | None, theirs: list[float] | None) -> float | None:
    if not ours or not theirs:
        return None
    a, b = statistics.median(ours), statistics.median(theirs)
    if metric.higher_is_better:
        return a / b if b else None
    return b / a if a else None


def comparison_table(results: Results, section: str, metrics: list[Metric], subjects: tuple[str, str],
                     third: str | None = None) -> str:
    """subjects[0] against subjects[1]; with ``third``, a column of its samples (where it has any)
    and subjects[0]'s ratio to it."""
    data = results.samples.get(section, {})
    extra = f" {third} | ratio to {third} |" if third else ""
    lines = [
        f"| metric | {subjects[0]} | {subjects[1]} | ratio | target | |{extra}",
        "|---|---|---|---|---|---|" + ("---|---|" if third else ""),
    ]
    for metric in metrics:
        row = data.get(metric.key, {})
        ours, theirs = row.get(subjects[0]), row.get(subjects[1])
        if not ours and not theirs:
            continue
        ratio = _ratio(metric, ours, theirs)
        target = f"≥ {metric.target:g}×" if metric.target is not None else ""
        status = ""
        if ratio is not None and metric.target is not None:
            status = "met" if ratio >= metric.target else "**not met**"
        cells = ""
        if third:
            other = row.get(third)
            to_third = _ratio(metric, ours, other)
            cells = f" {_cell(other, metric.unit)} | {'-' if to_third is None else f'{to_third:.2f}×'} |"
        lines.append(
            f"| {metric.label} | {_cell(ours, metric.unit)} | {_cell(theirs, metric.unit)} | "
            f"{'-' if ratio is None else f'{ratio:.2f}×'} | {target} | {status} |{cells}"
        )
    return "\n".join(lines)


def _floor_lines(results: Results) -> str:
    """bench/raw_push.py and raw_pull.py beside the clients (same runs)."""
    data = results.samples.get("clients", {})
    lines = []
    for key, label in (("push_many", "push, many small layers"), ("pull_many", "pull, many small layers"),
                       ("push_one", "push, one big layer"), ("pull_one", "pull, one big layer")):
        row = data.get(key, {})
        floor, ours, theirs = row.get(RAW), row.get(A), row.get("skopeo")
        if not floor:
            continue
        parts = [f"{_cell(floor, 'MB/s')}"]
        for name, values in ((A, ours), ("skopeo", theirs)):
            if values:
                parts.append(f"{name} at {statistics.median(values) / statistics.median(floor):.0%} of it")
        lines.append(f"- {label}: " + "; ".join(parts))
    if not lines:
        return ""
    return ("\nThe floor in the same runs (`bench/raw_push.py`, `bench/raw_pull.py`: plain sockets, every blob "
            "hashed; pushes send it with `sendfile`, pulls read it with `recv_into` and fsync and rename it; "
            "no library, no cache):\n\n" + "\n".join(lines))


def _disk_line(results: Results, section: str, writers: str) -> str:
    samples = results.samples.get(section, {}).get("disk_write", {}).get("machine")
    if not samples:
        return ""
    return (f"\nThe disk in the same runs: 1 GiB written durably by one process with nothing else running "
            f"(writeback started every 8 MiB, one fdatasync): {_cell(samples, 'MB/s')}. {writers} write to this "
            f"disk while the same two cores also move and hash every byte.")


def render(results: Results, command: str, runs: int) -> str:
    out = []
    memory = results.samples.get("memory", {})
    today = datetime.date.today().isoformat()
    mem_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    out.append(f"Date: {today}. Machine: {os.cpu_count()} CPUs (`nproc` {_nproc()}), {mem_total:.1f} GiB memory, "
               f"{platform.platform()}, Python {platform.python_version()}.")
    out.append(f"Command: `{command}`. Medians of {runs} runs, (min–max); 1 MB = 10^6 bytes.")
    notes = results.notes.get("compare")
    if isinstance(notes, dict):
        out.append(f"\n### cargohold against Distribution 2.8 (same run, alternating)\n\n"
                   f"Blob size {notes['big_bytes'] / 2**20:g} MiB, chunks of {notes['chunk_bytes'] / 2**20:g} MiB; "
                   f"{notes['tags']} tags; {notes['repositories']} repositories; {notes['images']} images; "
                   f"load for {notes['duration_s']:g} s per measurement.\n")
        out.append(comparison_table(results, "compare", COMPARE, (A, B), NGINX))
        out.append(f"\n{NGINX}: the blob GET's floor, the same bytes as a file served with `sendfile on` "
                   f"(a generated config, one worker per CPU).")
        cpu = results.samples["compare"].get("download_cpu", {})
        if cpu:
            out.append("The server's CPU time (user + system, all its processes) per GiB of blob GET: " + "; ".join(
                f"{name} {_cell(cpu.get(name), 's')}" for name in (A, B, NGINX)) + ".")
        out.append(_disk_line(results, "compare", "cargohold's uploads"))
    if memory:
        out.append(f"\n### Memory\n\nPeak RSS of all the server's processes while a "
                   f"{results.notes['memory']['blob_bytes'] / 2**20:g} MiB blob is pushed "  # type: ignore[index]
                   f"(one PUT) and pulled (one GET); target: under 250 MB.\n")
        out.append("| | cargohold | distribution |\n|---|---|---|")
        for key, label in (("idle_rss", "idle, all processes"), ("peak_rss", "peak, all processes"),
                           ("peak_rss_process", "peak, largest process")):
            row = memory.get(key, {})
            out.append(f"| {label} | {_cell(row.get(A), 'MB')} | {_cell(row.get(B), 'MB')} |")
    if "workers" in results.samples:
        out.append("\n### cargohold workers: 1 against 2 (same run, alternating)\n")
        out.append(comparison_table(results, "workers", WORKERS, ("2 workers", "1 worker")))
    if "clients" in results.samples:
        n = results.notes.get("clients", {})
        assert isinstance(n, dict)
        out.append(f"\n### Our client against skopeo (both against cargohold)\n\n"
                   f"{n.get('layers')} layers of {n.get('layer_bytes', 0) / 2**20:g} MiB; one layer of "
                   f"{n.get('one_layer_bytes', 0) / 2**20:g} MiB. Wall time of the whole command.\n")
        out.append(comparison_table(results, "clients", CLIENTS, ("cargohold", "skopeo")))
        out.append(_floor_lines(results))
        out.append("\nCPU seconds (user + system) of the same commands; ratio skopeo/cargohold:\n")
        out.append(comparison_table(results, "clients", CLIENTS_CPU, ("cargohold", "skopeo")))
        out.append(_disk_line(results, "clients", "Both clients' pulls (each fsyncs every blob)"))
    if "events" in results.samples:
        posts = results.notes.get("events", {})
        assert isinstance(posts, dict)
        out.append("\n### Events on against off (same run, alternating)\n\nOn: one webhook endpoint hearing of "
                   "push, pull, delete and mount, its receiver up, and the audit log (always on). Pushes: ten "
                   "endpoints against ten whose deliveries are written but not sent (`notifications.deliver: "
                   "false`), which is the cost of sending; then the latter against none, which is the cost of the "
                   f"outbox rows. The receiver took {posts.get('webhook_posts')} POSTs.\n")
        out.append(comparison_table(results, "events", EVENTS, (EVENTS_ON, EVENTS_OFF)))
        out.append("")
        out.append(comparison_table(results, "events", EVENTS_PUSH, (TEN, HELD)))
        out.append("")
        out.append(comparison_table(results, "events", EVENTS_ROWS, (HELD, NONE)))
    out += _gc_lines(results)
    out += _metrics_lines(results)
    out += proxy.render(results)
    out += edit.render(results)
    large = results.samples.get("large")
    if large:
        n = results.notes.get("large", {})
        assert isinstance(n, dict)
        out.append(f"\n### Listings at scale: {n.get('tags')} tags in one repository, {n.get('repositories')} "
                   f"repositories\n\nMilliseconds per page of 100, {n.get('samples')} sequential requests on one "
                   f"connection; target: under 5 ms.\n")
        subjects = [s for s in (A, B) if any(s in v for v in large.values())]
        out.append("| page | " + " | ".join(f"{s} median | {s} p99" for s in subjects) + " |")
        out.append("|---|" + "---|---|" * len(subjects))
        for key in ("tags_first_page", "tags_middle_page", "catalog_first_page", "catalog_middle_page"):
            cells = []
            for s in subjects:
                cells += [f"{large[f'{key}.median_ms'][s][0]:.2f} ms", f"{large[f'{key}.p99_ms'][s][0]:.2f} ms"]
            out.append(f"| {key.replace('_', ' ')} | " + " | ".join(cells) + " |")
        fill = " ".join(f"{s}: {large['populate_s'][s][0]:.0f} s" for s in subjects)
        out.append(f"\nFilling them over the API (4 connections): {fill}.")
    out += s3.render(results)
    return "\n".join(out)


def _gc_lines(results: Results) -> list[str]:
    notes = results.notes.get("gc")
    if "gc" not in results.samples or not isinstance(notes, dict):
        return []
    out = [f"\n### Serving during a garbage collection (same run, alternating)\n\nSQLite + filesystem. During: "
           f"`cargohold gc` collecting {notes['blobs']:,} unreferenced blobs (grace periods 0), the load begun once "
           f"its run is recorded; without: the same load with no collection. Load for {notes['duration_s']:g} s; "
           f"upload of {notes['big_bytes'] / 2**20:g} MiB.\n"]
    out.append(comparison_table(results, "gc", GC, (gc.DURING, gc.WITHOUT)))
    overlap = notes["overlap"]
    shares = "; ".join(f"{key.replace('_', ' ')} {min(v):.0%}–{max(v):.0%}" for key, v in overlap.items())
    out.append(f"\nShare of the measured window the collection was running in: {shares}. "
               f"A collection took {_cell(notes['collection_s'], 's')} under the load.")
    scale = results.samples.get("gc_scale", {})
    if scale:
        out.append(f"\nCollecting {notes['scale_blobs']:,} unreferenced blobs at once (one `cargohold gc`, no load): "
                   f"{_cell(scale['seconds'][A], 's')}, {_cell(scale['blobs_per_s'][A], 'blobs/s')}.")
    return out


def _metrics_lines(results: Results) -> list[str]:
    notes = results.notes.get("metrics")
    if "metrics" not in results.samples or not isinstance(notes, dict):
        return []
    return [f"\n### Metrics on against off (same run, alternating)\n\nOn: `metrics.enabled` with a token, "
            f"`/metrics` scraped every {notes['scrape_seconds']:g} s during the load ({notes['scrape_bytes']:,} bytes "
            f"a scrape); off: no metrics. SQLite + filesystem.\n",
            comparison_table(results, "metrics", METRICS, (metrics.ON, metrics.OFF))]


def _nproc() -> str:
    try:
        return subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one run: a smoke test")
    parser.add_argument("--runs", type=int, help="runs per comparison (default 3; 1 with --quick)")
    parser.add_argument("--phases", default=",".join(PHASES),
                        help=f"comma-separated subset of {','.join(PHASES + S3_PHASES)}")
    parser.add_argument("--large-distribution", action="store_true",
                        help="fill Distribution at scale too (slow: it walks directories)")
    parser.add_argument("--large-quota", metavar="LIMIT",
                        help="give the large phase's namespace a quota (50GiB): its manifest PUTs check it")
    parser.add_argument("--workdir", help="where servers keep data (default: a new temporary directory)")
    parser.add_argument("--json", dest="json_out", help="write the raw samples here")
    parser.add_argument("--markdown", help="write the tables here")
    args = parser.parse_args(argv)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(phases) - set(PHASES) - set(S3_PHASES)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    missing = missing_tools(need_skopeo="clients" in phases)
    if missing:
        print("python -m bench: missing, install first (nothing is installed for you):", file=sys.stderr)
        for item in missing:
            print(f"  - {item}", file=sys.stderr)
        return 2
    sizes = Sizes.quick() if args.quick else Sizes()
    runs = args.runs or (1 if args.quick else 3)
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="cargohold-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results = Results()
    started = time.monotonic()
    # byte-compile the source tree first, as installing a package does: where PYTHONDONTWRITEBYTECODE
    # is set (it is on this machine), every start of the server or the CLI would compile it again
    compileall.compile_dir(SRC / "cargohold", quiet=1)
    try:
        if "compare" in phases:
            phase_compare(work, sizes, runs, results)
        if "memory" in phases:
            phase_memory(work, sizes, results)
        if "workers" in phases:
            phase_workers(work, sizes, runs, results)
        if "clients" in phases:
            phase_clients(work, sizes, runs, results)
        if "large" in phases:
            phase_large(work, sizes, results, args.large_distribution, args.large_quota)
        if "events" in phases:
            phase_events(work / "events", sizes, runs, results)
        if "gc" in phases:
            gc.phase_gc(work / "gc", sizes, runs, results, say)
        if "proxy" in phases:
            proxy.phase_proxy(work / "proxy", sizes, runs, results, say)
        if "edit" in phases:
            edit.phase_edit(work / "edit", sizes, runs, results, say)
        if "metrics" in phases:
            metrics.phase_metrics(work / "metrics", sizes, runs, results, say)
        if "s3" in phases:
            s3.phase_s3(work, sizes, runs, results, say)
        if "pg-listings" in phases:
            s3.phase_pg_listings(work, sizes, results, say)
        if "replicas" in phases:
            s3.phase_replicas(work, sizes, runs, results, say)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    say(f"done in {time.monotonic() - started:.0f} s")
    text = render(results, command.strip(), runs)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"samples": results.samples, "notes": results.notes}, indent=1))
    return 0
