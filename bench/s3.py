"""The scale-out setting: cargohold on PostgreSQL and S3 against Distribution on the same S3.

Phases (``python -m bench --phases s3,pg-listings,replicas``):

- ``s3``: a throwaway PostgreSQL 15 cluster and SeaweedFS (the tests' own, ``tests/support``);
  cargohold with its metadata in PostgreSQL and its blobs in one bucket, Distribution 2.8 with its
  S3 driver in another bucket of the same SeaweedFS; uploads, blob GETs following the 307 to S3,
  manifest GETs and blob HEADs, alternating; then each server's peak RSS while a big blob is pushed.
- ``pg-listings``: 100,000 tags in one repository and 10,000 repositories written into PostgreSQL
  with COPY, then the latency of a page of 100 over loopback.
- ``replicas``: manifest GET by tag against one ``serve`` and against two on the same database and
  bucket, the same load split across them, with the CPU each process group took meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from . import images, workloads
from .httpc import Connection, expect
from .images import ACCEPT, Blob
from .servers import RssSampler, Server, machine_busy
from .table import cell
from .workloads import APP, BIG, Sizes

if TYPE_CHECKING:
    from .run import Results

A, B = "cargohold", "distribution"
ONE, TWO = "1 replica", "2 replicas"
CARGOHOLD_BUCKET, DISTRIBUTION_BUCKET = "cargohold-bench", "distribution-bench"


@dataclass
class Backends:
    """PostgreSQL and SeaweedFS for one phase."""

    postgres: Any  # tests.support.postgres.PostgresCluster
    s3: Any  # tests.support.seaweedfs.SeaweedFS

    def cargohold(self, work: Path, name: str, database_url: str, *extra: str) -> Server:
        """A cargohold on ``database_url`` and the cargohold bucket (replicas share both)."""
        config = work / "cargohold-s3.json"
        options = {**self.s3.options("cargohold/"), "bucket": CARGOHOLD_BUCKET, "part_size": 16 << 20}
        config.write_text(json.dumps({"storage": {"driver": "s3", "s3": options},
                                      "database": {"url": database_url}}))  # JSON is YAML
        return Server(A, work / name, extra_args=["--config", str(config), *extra])

    def distribution(self, work: Path) -> Server:
        from tests.support.seaweedfs import ACCESS_KEY, SECRET_KEY

        storage = (
            "  s3:\n"
            f"    accesskey: {ACCESS_KEY}\n"
            f"    secretkey: {SECRET_KEY}\n"
            "    region: us-east-1\n"
            f"    regionendpoint: {self.s3.endpoint}\n"
            f"    bucket: {DISTRIBUTION_BUCKET}\n"
            "    secure: false\n"
            "    v4auth: true\n"
            "    rootdirectory: /distribution\n"
            "  redirect: {disable: false}\n"
        )
        return Server(B, work / B, distribution_storage=storage)


@contextlib.contextmanager
def backends(work: Path) -> Iterator[Backends]:
    from tests.support.postgres import start_cluster
    from tests.support.seaweedfs import start_seaweedfs

    work.mkdir(parents=True, exist_ok=True)
    # its own folder in /tmp: the server runs as another user, who cannot enter the benchmark's private one
    cluster = start_cluster(Path(tempfile.mkdtemp(prefix="cargohold-bench-pg-")))
    try:
        # GiB blobs: the tests' 20 volumes of 64 MB would fill up
        weed = start_seaweedfs(work / "seaweedfs", volumes=200, volume_mb=1024)
        try:
            for bucket in (CARGOHOLD_BUCKET, DISTRIBUTION_BUCKET):
                weed.client().create_bucket(Bucket=bucket)
            yield Backends(cluster, weed)
        finally:
            weed.stop()
    finally:
        cluster.stop()


# blob GET following the registry's redirect


def download_redirected(server: Server, blob: Blob, repository: str = BIG) -> float:
    """MB/s of one blob GET, counting the registry's answer and, after a 307, the GET of its Location."""
    with server.connection() as conn:
        started = time.perf_counter()
        reply = expect(conn.request("GET", f"/v2/{repository}/blobs/{blob.digest}", keep=False), 200, 307)
        if reply.status == 307:
            location = urlsplit(reply.header("location") or "")
            with Connection(location.hostname or "", location.port or 80) as storage:
                target = location.path + (f"?{location.query}" if location.query else "")
                reply = expect(storage.request("GET", target, keep=False), 200)
        elapsed = time.perf_counter() - started
    if reply.length != blob.size:
        raise RuntimeError(f"{server.name}: GET returned {reply.length} bytes, not {blob.size}")
    return blob.size / elapsed / 1e6


def head_status(server: Server, digest: str) -> int:
    """What a blob HEAD answers before any redirect is followed."""
    with server.connection() as conn:
        return conn.request("HEAD", f"/v2/{APP}/blobs/{digest}").status


# the s3 phase


def phase_s3(work: Path, sizes: Sizes, runs: int, results: Results, say: Any) -> None:
    big = work / "s3-big.bin"
    with backends(work / "s3-backends") as env:
        pair = [env.cargohold(work, "s3-cargohold", env.postgres.fresh_database()).start(),
                env.distribution(work).start()]
        try:
            fixtures = {s.name: workloads.setup(s, sizes) for s in pair}
            results.notes["s3_head_status"] = {s.name: head_status(s, fixtures[s.name].layer.digest) for s in pair}
            for run in range(runs):
                say(f"s3: run {run + 1}/{runs}")
                order = pair if run % 2 == 0 else pair[::-1]
                last: dict[str, Blob] = {}
                for server in order:
                    blob = images.refresh(big) if big.exists() else images.random_file(big, sizes.s3_blob)
                    results.add("s3", "upload_monolithic", server.name, workloads.upload_monolithic(server, big, blob))
                for server in order:
                    blob = images.refresh(big)
                    results.add("s3", "upload_chunked", server.name,
                                workloads.upload_chunked(server, big, blob, sizes.chunk))
                    last[server.name] = blob
                for _ in range(3):
                    for server in order:
                        results.add("s3", "download", server.name, download_redirected(server, last[server.name]))
                for server in order:
                    results.add("s3", "manifest_get", server.name, workloads.manifest_get(server, sizes))
                for server in order:
                    results.add("s3", "blob_head", server.name,
                                workloads.blob_head(server, sizes, fixtures[server.name]))
            say(f"s3: peak RSS while a {sizes.memory_blob >> 20} MiB blob is pushed")
            blob = images.random_file(big, sizes.memory_blob)
            for server in pair:
                idle, _ = server.rss_bytes()
                results.add("s3_memory", "idle_pss", server.name, server.pss_bytes() / 1e6)
                with RssSampler(server) as sampler:
                    rate = workloads.upload_monolithic(server, big, blob)
                results.add("s3_memory", "idle_rss", server.name, idle / 1e6)
                results.add("s3_memory", "peak_rss", server.name, sampler.peak_total / 1e6)
                results.add("s3_memory", "peak_rss_process", server.name, sampler.peak_process / 1e6)
                results.add("s3_memory", "peak_pss", server.name, sampler.peak_pss / 1e6)
                results.add("s3_memory", "upload", server.name, rate)
                blob = images.refresh(big)
            results.notes["s3"] = {"blob_bytes": sizes.s3_blob, "chunk_bytes": sizes.chunk,
                                   "memory_blob_bytes": sizes.memory_blob, "duration_s": sizes.duration}
        except OSError:
            for server in pair:  # which one went, and how (a negative code: the signal that ended it)
                if server.process is not None and server.process.poll() is not None:
                    say(f"s3: {server.name} exited with {server.process.returncode}")
            raise
        finally:
            for server in pair:
                _keep_log(server, work)
                server.cleanup()
            big.unlink(missing_ok=True)


# listings at scale in PostgreSQL, seeded with COPY


def seed_listings(database_url: str, repository: str, manifest_digest: str, tags: int, repositories: int) -> float:
    """``tags`` tags in ``repository`` (each naming ``manifest_digest``) and ``repositories`` more
    repositories, each with a tag ``latest`` on a manifest of its own; seconds taken."""
    import psycopg

    started = time.perf_counter()
    now = int(time.time())
    with psycopg.connect(database_url) as db:
        row = db.execute("SELECT id FROM repositories WHERE name = %s", (repository,)).fetchone()
        assert row is not None
        repository_id = row[0]
        with db.cursor().copy("COPY tags (repository_id, name, manifest_digest, updated_at) FROM STDIN") as copy:
            for i in range(tags):
                copy.write_row((repository_id, f"tag-{i:06d}", manifest_digest, now))
        with db.cursor().copy("COPY repositories (name, created_at) FROM STDIN") as copy:
            for i in range(repositories):
                copy.write_row((f"large/repo-{i:05d}", now))
        db.execute(
            "INSERT INTO manifests (repository_id, digest, media_type, content, created_at)"
            " SELECT r.id, m.digest, m.media_type, m.content, m.created_at FROM repositories r,"
            " manifests m WHERE r.name LIKE 'large/repo-%%' AND m.digest = %s AND m.repository_id = %s",
            (manifest_digest, repository_id))
        db.execute(
            "INSERT INTO tags (repository_id, name, manifest_digest, updated_at)"
            " SELECT id, 'latest', %s, %s FROM repositories WHERE name LIKE 'large/repo-%%'",
            (manifest_digest, now))
        db.execute("ANALYZE")
    return time.perf_counter() - started


def page_latencies(servers: dict[str, Server], targets: dict[str, str],
                   samples: int) -> dict[str, dict[str, dict[str, float]]]:
    """Per server and target, milliseconds per request (median, p95, p99) of ``samples`` GETs on one
    connection per server, the servers and targets taking turns (a burst of other work on the machine hits
    them alike), after 20 unmeasured rounds; and the same for the time the server itself took, from its
    access log (``server_*``)."""
    times = {name: {key: [] for key in targets} for name in servers}
    connections = {name: server.connection() for name, server in servers.items()}
    try:
        for round_ in range(20 + samples):
            for name, conn in connections.items():
                for key, target in targets.items():
                    started = time.perf_counter()
                    expect(conn.request("GET", target), 200)
                    if round_ >= 20:
                        times[name][key].append((time.perf_counter() - started) * 1000)
    finally:
        for conn in connections.values():
            conn.close()
    time.sleep(0.5)  # the access log is written once per event loop iteration
    found: dict[str, dict[str, dict[str, float]]] = {}
    for name, server in servers.items():
        served = _served(server, targets, samples)
        found[name] = {}
        for key in targets:
            found[name][key] = _stats(times[name][key])
            if served[key]:
                found[name][key].update({f"server_{k}": v for k, v in _stats(served[key]).items()})
    return found


def _served(server: Server, targets: dict[str, str], samples: int) -> dict[str, list[float]]:
    """The durations the access log gives for the last ``20 + samples`` rounds of ``targets``, past the 20.

    The log names the path without the query: its lines are matched to the requests in order (one
    connection, served by one worker, logged in order)."""
    order = [key for _ in range(20 + samples) for key in targets]
    paths = {urlsplit(target).path for target in targets.values()}
    entries = [json.loads(line) for line in (server.workdir / "server.log").read_text(errors="replace").splitlines()
               if line.startswith('{"method": "GET"')]
    entries = [entry for entry in entries if entry["path"] in paths][-len(order):]
    served: dict[str, list[float]] = {key: [] for key in targets}
    matched = len(entries) == len(order) and all(
        entry["path"] == urlsplit(targets[key]).path for entry, key in zip(entries, order, strict=True))
    if matched:
        for entry, key in list(zip(entries, order, strict=True))[20 * len(targets):]:
            served[key].append(float(entry["duration_ms"]))
    return served


def _stats(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {"median_ms": statistics.median(values), "p95_ms": values[max(0, int(len(values) * 0.95) - 1)],
            "p99_ms": values[max(0, int(len(values) * 0.99) - 1)]}


def explain(database_url: str, query: str, args: tuple[object, ...]) -> str:
    import psycopg

    with psycopg.connect(database_url) as db:
        rows = db.execute("EXPLAIN (ANALYZE, BUFFERS) " + query, args).fetchall()  # type: ignore[arg-type]
    return "\n".join(row[0] for row in rows)


def seed_sqlite(path: Path, repository: str, manifest_digest: str, tags: int, repositories: int) -> None:
    """:func:`seed_listings` for a server on SQLite, the control: the same rows, by executemany."""
    import sqlite3

    now = int(time.time())
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as db, db:
        repository_id = db.execute("SELECT id FROM repositories WHERE name = ?", (repository,)).fetchone()[0]
        db.executemany("INSERT INTO tags (repository_id, name, manifest_digest, updated_at) VALUES (?, ?, ?, ?)",
                       ((repository_id, f"tag-{i:06d}", manifest_digest, now) for i in range(tags)))
        db.executemany("INSERT INTO repositories (name, created_at) VALUES (?, ?)",
                       ((f"large/repo-{i:05d}", now) for i in range(repositories)))
        db.execute("ANALYZE")


def _seed_image(server: Server) -> str:
    """The app image, and its manifest tagged in large/tags; the manifest's digest."""
    fixture = workloads.setup(server, Sizes(tags=0, repos=0))
    with server.connection() as conn:
        for blob in (fixture.config, fixture.layer):
            images.mount_blob(conn, "large/tags", APP, blob)
        images.put_manifest(conn, "large/tags", "seed", fixture.manifest)
    return images.of_bytes(fixture.manifest).digest


def phase_pg_listings(work: Path, sizes: Sizes, results: Results, say: Any) -> None:
    with backends(work / "pg-backends") as env:
        url = env.postgres.fresh_database()
        server = env.cargohold(work, "pg-cargohold", url).start()
        control = Server(A, work / "sqlite-cargohold").start()  # SQLite and the filesystem: the control
        try:
            digest = _seed_image(server)
            say(f"pg-listings: COPY of {sizes.large_tags} tags and {sizes.large_repos} repositories")
            results.add("pg_listings", "seed_s", A, seed_listings(url, "large/tags", digest, sizes.large_tags,
                                                                   sizes.large_repos))
            seed_sqlite(control.workdir / "data" / "metadata.db", "large/tags", _seed_image(control),
                        sizes.large_tags, sizes.large_repos)
            middle_tag, middle_repo = f"tag-{sizes.large_tags // 2:06d}", f"large/repo-{sizes.large_repos // 2:05d}"
            pages = {
                "tags_first_page": "/v2/large/tags/tags/list?n=100",
                "tags_middle_page": f"/v2/large/tags/tags/list?n=100&last={middle_tag}",
                "catalog_first_page": "/v2/_catalog?n=100",
                "catalog_middle_page": f"/v2/_catalog?n=100&last={middle_repo}",
                "api_version_check": "/v2/",  # the floor: no query at all
                # the web UI's pages (auth off on loopback: browsing without login), 50 rows each
                "ui_tags_first_page": "/ui/repositories/large/tags/-/tags",
                "ui_tags_middle_page": f"/ui/repositories/large/tags/-/tags?after={middle_tag}",
                "ui_tags_newest_first": "/ui/repositories/large/tags/-/tags?sort=pushed",
                "ui_repositories_first_page": "/ui/repositories",
                "ui_repositories_middle_page": f"/ui/repositories?after={middle_repo}",
            }
            measured = page_latencies({"postgres": server, "sqlite": control}, pages, sizes.latency_samples)
            for subject, found in measured.items():
                for key, stats in found.items():
                    for stat, value in stats.items():
                        results.add("pg_listings", f"{key}.{stat}", subject, value)
            results.notes["pg_listings"] = {
                "tags": sizes.large_tags, "repositories": sizes.large_repos + 3, "samples": sizes.latency_samples,
                "explain_tags": explain(
                    url, "SELECT name FROM tags WHERE repository_id = (SELECT id FROM repositories WHERE name ="
                    " 'large/tags') AND name > %s ORDER BY name LIMIT 100", (middle_tag,)),
                "explain_catalog": explain(
                    url, "SELECT name FROM repositories WHERE name > %s ORDER BY name LIMIT 100", (middle_repo,)),
            }
        finally:
            server.cleanup()
            control.cleanup()


# one replica against two


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as file:
                    parent = int(file.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _ticks(pids: list[int]) -> dict[int, int]:
    ticks = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks[pid] = int(fields[11]) + int(fields[12])
    return ticks


_WRK_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")


def split_load(urls: list[str], duration: float, connections: int,
               groups: dict[str, list[int]]) -> tuple[float, dict[str, float]]:
    """One wrk per URL at once (``connections`` in all, split evenly; one thread each); the summed
    requests/s, and the CPUs each process group used meanwhile (``wrk``, ``other``: the rest of the machine)."""
    hz = os.sysconf("SC_CLK_TCK")
    before = {name: _ticks(pids) for name, pids in groups.items()}
    busy, children, started = machine_busy(), resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    argv = ["wrk", "-t1", f"-c{connections // len(urls)}", f"-d{max(1, round(duration))}s", "-H", f"Accept: {ACCEPT}"]
    processes = [subprocess.Popen([*argv, url], stdout=subprocess.PIPE, text=True) for url in urls]
    outputs = [p.communicate(timeout=duration + 60)[0] for p in processes]
    elapsed = time.perf_counter() - started
    busy_after, children_after = machine_busy(), resource.getrusage(resource.RUSAGE_CHILDREN)
    total = 0.0
    for out in outputs:
        found = _WRK_RATE.search(out)
        if found is None or "Non-2xx" in out or "Socket errors" in out:
            raise RuntimeError(f"wrk:\n{out}")
        total += float(found.group(1))
    cpus = {}
    for name, pids in groups.items():
        after = _ticks(pids)
        cpus[name] = sum(t - before[name].get(pid, 0) for pid, t in after.items()) / hz / elapsed
    cpus["wrk"] = (children_after.ru_utime + children_after.ru_stime - children.ru_utime - children.ru_stime) / elapsed
    cpus["other"] = max(0.0, (busy_after - busy) / hz / elapsed - sum(cpus.values()))
    return total, cpus


def phase_replicas(work: Path, sizes: Sizes, runs: int, results: Results, say: Any) -> None:
    with backends(work / "replica-backends") as env:
        url = env.postgres.fresh_database()
        replicas = [env.cargohold(work, f"replica-{n}", url).start() for n in (1, 2)]
        try:
            workloads.setup(replicas[0], Sizes(tags=0, repos=0))
            paths = [f"http://{r.address}/v2/{APP}/manifests/latest" for r in replicas]
            for run in range(runs):
                say(f"replicas: run {run + 1}/{runs}")
                for label in ([ONE, TWO] if run % 2 == 0 else [TWO, ONE]):
                    urls = [paths[0], paths[0]] if label == ONE else paths
                    groups = {"replica 1": _descendants(replicas[0].process.pid),  # type: ignore[union-attr]
                              "replica 2": _descendants(replicas[1].process.pid),  # type: ignore[union-attr]
                              "postgres": _descendants(env.postgres.pid)}
                    rate, cpus = split_load(urls, sizes.duration, 32, groups)
                    results.add("replicas", "manifest_get", label, rate)
                    for name, used in cpus.items():
                        results.add("replicas", f"cpu.{name}", label, used)
            results.notes["replicas"] = {"workers": _workers(replicas[0]), "duration_s": sizes.duration}
        finally:
            for server in replicas:
                _keep_log(server, work)
                server.cleanup()


def _keep_log(server: Server, work: Path) -> None:
    """The server's log, kept beside the work folder's results (its own folder is removed)."""
    with contextlib.suppress(OSError):
        shutil.copyfile(server.workdir / "server.log", work / f"{server.workdir.name}.log")


def _workers(server: Server) -> int:
    return len(server.pids()) - 1


# reporting


S3_METRICS = [
    ("upload_monolithic", "Blob upload, one monolithic PUT", "MB/s", 1.5),
    ("upload_chunked", "Blob upload, chunked PATCHes", "MB/s", 1.5),
    ("download", "Blob GET, following the 307 to S3", "MB/s", 1.0),
    ("manifest_get", "Manifest GET by tag, 32 connections", "req/s", 5.0),
    ("blob_head", "Blob HEAD, 32 connections (redirects followed)", "req/s", 5.0),
]


def render(results: Results) -> list[str]:
    out: list[str] = []
    data = results.samples.get("s3", {})
    notes = results.notes.get("s3")
    if data and isinstance(notes, dict):
        out.append(f"\n### cargohold (PostgreSQL + S3) against Distribution 2.8 (S3), same SeaweedFS, alternating\n\n"
                   f"Blob size {notes['blob_bytes'] / 2**20:g} MiB, chunks of {notes['chunk_bytes'] / 2**20:g} MiB; "
                   f"load for {notes['duration_s']:g} s per measurement. What a blob HEAD answers before any "
                   f"redirect: {results.notes.get('s3_head_status')}.\n")
        out.append("| metric | cargohold | distribution | ratio | target | |\n|---|---|---|---|---|---|")
        for key, label, unit, target in S3_METRICS:
            row = data.get(key, {})
            ours, theirs = row.get(A), row.get(B)
            ratio = statistics.median(ours) / statistics.median(theirs) if ours and theirs else None
            status = "" if ratio is None else ("met" if ratio >= target else "**not met**")
            out.append(f"| {label} | {cell(ours, unit)} | {cell(theirs, unit)} | "
                       f"{'-' if ratio is None else f'{ratio:.2f}×'} | ≥ {target:g}× | {status} |")
    memory = results.samples.get("s3_memory", {})
    if memory and isinstance(notes, dict):
        out.append(f"\nPeak RSS while a {notes['memory_blob_bytes'] / 2**20:g} MiB blob is pushed in one PUT "
                   f"(S3, streamed; sampled every 50 ms); target: under 250 MB per replica.\n")
        out.append("| | cargohold | distribution |\n|---|---|---|")
        for key, label, unit in (("idle_rss", "idle, all processes", "MB"),
                                 ("peak_rss", "peak, all processes", "MB"),
                                 ("peak_rss_process", "peak, largest process", "MB"),
                                 ("idle_pss", "idle PSS, all processes (shared pages once)", "MB"),
                                 ("peak_pss", "peak PSS, all processes (shared pages once)", "MB"),
                                 ("upload", "the PUT", "MB/s")):
            row = memory.get(key, {})
            out.append(f"| {label} | {cell(row.get(A), unit)} | {cell(row.get(B), unit)} |")
    large = results.samples.get("pg_listings", {})
    notes = results.notes.get("pg_listings")
    if large and isinstance(notes, dict):
        out.append(f"\n### Listings at scale on PostgreSQL: {notes['tags']} tags in one repository, "
                   f"{notes['repositories']} repositories\n\nWritten with COPY in "
                   f"{large['seed_s'][A][0]:.1f} s. {notes['samples']} sequential GETs of a page of 100 on one "
                   f"connection per server over loopback, servers and pages taking turns (after 20 unmeasured "
                   f"rounds), and the time the server took by its access log; `/v2/` (no query) is the floor; "
                   f"the same rows in SQLite are the control; target: under 5 ms for the API's pages, under "
                   f"100 ms for the web UI's (`ui …`, 50 rows each).\n")
        out.append("| page | metadata | median | p95 | p99 | server's own: median | p95 | p99 |\n"
                   "|---|---|---|---|---|---|---|---|")
        for key in ("tags_first_page", "tags_middle_page", "catalog_first_page", "catalog_middle_page",
                    "api_version_check", "ui_tags_first_page", "ui_tags_middle_page", "ui_tags_newest_first",
                    "ui_repositories_first_page", "ui_repositories_middle_page"):
            for subject in ("postgres", "sqlite"):
                cells = [f"{large[f'{key}.{stat}'][subject][0]:.2f} ms" if subject in large.get(f"{key}.{stat}", {})
                         else "-" for stat in ("median_ms", "p95_ms", "p99_ms", "server_median_ms", "server_p95_ms",
                                               "server_p99_ms")]
                out.append(f"| {key.replace('_', ' ')} | {subject} | " + " | ".join(cells) + " |")
        out.append("\nEXPLAIN ANALYZE of the middle pages' queries:\n\n```\n" + notes["explain_tags"] + "\n\n"
                   + notes["explain_catalog"] + "\n```")
    replicas = results.samples.get("replicas", {})
    notes = results.notes.get("replicas")
    if replicas and isinstance(notes, dict):
        out.append(f"\n### Manifest GET by tag: one replica against two (same PostgreSQL and bucket, alternating)\n\n"
                   f"{notes['workers']} workers per replica; two `wrk -t1 -c16` at once for "
                   f"{notes['duration_s']:g} s, both on the one replica or one on each. CPUs used meanwhile "
                   f"(CPU seconds per second, from /proc; 2 is the whole machine):\n")
        groups = ["replica 1", "replica 2", "postgres", "wrk", "other"]
        out.append("| | req/s | " + " | ".join(groups) + " |\n|---|---|" + "---|" * len(groups))
        for label in (ONE, TWO):
            cells = [cell(replicas.get(f"cpu.{g}", {}).get(label), "") for g in groups]
            out.append(f"| {label} | {cell(replicas['manifest_get'].get(label), 'req/s')} | "
                       + " | ".join(cells) + " |")
        out.append("\nCPU time per request (medians of the runs' CPUs / requests/s), and the rate the two CPUs "
                   "would allow if this work had them to itself:\n")
        out.append("| | cargohold | postgres | wrk | sum | 2 CPUs / sum |\n|---|---|---|---|---|---|")
        for label in (ONE, TWO):
            rate = statistics.median(replicas["manifest_get"][label])

            def per_request(*names: str, label: str = label, rate: float = rate) -> float:
                return sum(statistics.median(replicas[f"cpu.{n}"][label]) for n in names) / rate * 1e6

            ours, pg, load = per_request("replica 1", "replica 2"), per_request("postgres"), per_request("wrk")
            total = ours + pg + load
            out.append(f"| {label} | {ours:.0f} µs | {pg:.0f} µs | {load:.0f} µs | {total:.0f} µs | "
                       f"{2e6 / total:.0f} req/s |")
    return out
