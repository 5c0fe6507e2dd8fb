"""The workloads, each run against one server and returning one number (or a few)."""

from __future__ import annotations

import concurrent.futures
import ctypes
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import images
from .httpc import expect
from .images import ACCEPT, Blob
from .servers import SRC, RssSampler, Server

APP = "bench/app"
TAGS = "bench/tags"
BIG = "bench/big"


@dataclass(frozen=True)
class Sizes:
    """How big each workload is; ``quick`` shrinks everything to a smoke test."""

    big: int = 1 << 30
    chunk: int = 64 << 20
    memory_blob: int = 2 << 30
    duration: float = 5.0
    tags: int = 200
    repos: int = 120
    images: int = 200
    image_parallel: int = 8
    image_layer: int = 4096
    layers: int = 64
    layer_size: int = 4 << 20
    one_layer: int = 1 << 30
    large_tags: int = 100_000
    large_repos: int = 10_000
    latency_samples: int = 300
    #: the s3 phase's uploads and GETs
    s3_blob: int = 256 << 20
    #: the gc phase: unreferenced blobs per collection measured against serving, and in the big collection
    gc_blobs: int = 10_000
    gc_scale_blobs: int = 100_000

    @classmethod
    def quick(cls) -> Sizes:
        return cls(big=8 << 20, chunk=2 << 20, memory_blob=16 << 20, duration=1.0, tags=20, repos=12, images=16,
                   layers=4, layer_size=256 << 10, one_layer=8 << 20, large_tags=500, large_repos=100,
                   latency_samples=50, s3_blob=8 << 20, gc_blobs=500, gc_scale_blobs=2000)


@dataclass
class Fixture:
    """What setup() pushed to a server, for the workloads to use."""

    config: Blob
    layer: Blob
    manifest: bytes


def _location(reply_location: str | None, digest: str | None = None) -> str:
    location = reply_location or ""
    if digest is None:
        return location
    return f"{location}{'&' if '?' in location else '?'}digest={digest}"


def setup(server: Server, sizes: Sizes) -> Fixture:
    """A small image tagged ``latest`` in bench/app, ``tags`` tags in bench/tags, ``repos`` more repositories."""
    with server.connection() as conn:
        config = images.push_blob_bytes(conn, APP, images.config_bytes("app"))
        layer = images.push_blob_bytes(conn, APP, os.urandom(4096))
        manifest = images.manifest_bytes(config, [layer])
        images.put_manifest(conn, APP, "latest", manifest)
        for blob in (config, layer):
            images.mount_blob(conn, TAGS, APP, blob)
        for i in range(sizes.tags):
            images.put_manifest(conn, TAGS, f"tag-{i:04d}", manifest)
        for i in range(sizes.repos):
            name = f"bench/repo-{i:05d}"
            for blob in (config, layer):
                images.mount_blob(conn, name, APP, blob)
            images.put_manifest(conn, name, "latest", manifest)
    return Fixture(config, layer, manifest)


# blob transfer (MB/s; 1 MB = 10^6 bytes)


def upload_monolithic(server: Server, path: Path, blob: Blob) -> float:
    """POST, then one PUT with the whole blob and ?digest=."""
    with server.connection() as conn, open(path, "rb") as file:
        started = time.perf_counter()
        start = expect(conn.request("POST", f"/v2/{BIG}/blobs/uploads/"), 202)
        expect(conn.request("PUT", _location(start.header("location"), blob.digest), file=(file, 0, blob.size),
                            headers={"content-type": "application/octet-stream"}), 201)
        elapsed = time.perf_counter() - started
    return blob.size / elapsed / 1e6


def upload_chunked(server: Server, path: Path, blob: Blob, chunk: int) -> float:
    """POST, PATCHes of ``chunk`` bytes with Content-Range, then PUT ?digest= with no body."""
    with server.connection() as conn, open(path, "rb") as file:
        started = time.perf_counter()
        reply = expect(conn.request("POST", f"/v2/{BIG}/blobs/uploads/"), 202)
        offset = 0
        while offset < blob.size:
            count = min(chunk, blob.size - offset)
            reply = expect(conn.request("PATCH", _location(reply.header("location")), file=(file, offset, count),
                                        headers={"content-type": "application/octet-stream",
                                                 "content-range": f"{offset}-{offset + count - 1}"}), 202)
            offset += count
        expect(conn.request("PUT", _location(reply.header("location"), blob.digest)), 201)
        elapsed = time.perf_counter() - started
    return blob.size / elapsed / 1e6


def download(server: Server, blob: Blob, repository: str = BIG) -> float:
    with server.connection() as conn:
        started = time.perf_counter()
        reply = expect(conn.request("GET", f"/v2/{repository}/blobs/{blob.digest}", keep=False), 200)
        elapsed = time.perf_counter() - started
    if reply.length != blob.size:
        raise RuntimeError(f"{server.name}: GET returned {reply.length} bytes, not {blob.size}")
    return blob.size / elapsed / 1e6


# request rates (requests/s)

_WRK_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_HEY_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")


def wrk(url: str, duration: float, connections: int = 32, headers: dict[str, str] | None = None) -> float:
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(duration))}s"]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    found = _WRK_RATE.search(out)
    if found is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    return float(found.group(1))


def hey_head(url: str, duration: float, connections: int = 32) -> float:
    """HEAD load with hey (wrk 4.1 waits for a body after HEAD and hangs)."""
    argv = ["hey", "-z", f"{max(1, round(duration))}s", "-c", str(connections), "-m", "HEAD", url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    statuses = re.findall(r"\[(\d+)\]\s+\d+ responses", out)
    if statuses != ["200"]:
        raise RuntimeError(f"hey saw statuses {statuses}:\n{out}")
    found = _HEY_RATE.search(out)
    if found is None:
        raise RuntimeError(f"cannot read hey's output:\n{out}")
    return float(found.group(1))


def manifest_get(server: Server, sizes: Sizes) -> float:
    url = f"http://{server.address}/v2/{APP}/manifests/latest"
    return wrk(url, sizes.duration, headers={"Accept": ACCEPT})


def blob_head(server: Server, sizes: Sizes, fixture: Fixture) -> float:
    return hey_head(f"http://{server.address}/v2/{APP}/blobs/{fixture.layer.digest}", sizes.duration)


def tags_list(server: Server, sizes: Sizes) -> float:
    return wrk(f"http://{server.address}/v2/{TAGS}/tags/list", sizes.duration)


def catalog_page(server: Server, sizes: Sizes) -> float:
    return wrk(f"http://{server.address}/v2/_catalog?n=100", sizes.duration)


# many small images, pushed with cargohold's client library, 8 at a time

_pusher_client = None


def _pusher_init() -> None:
    global _pusher_client
    sys.path.insert(0, str(SRC))
    from cargohold.client import RegistryClient

    _pusher_client = RegistryClient(workers=1)


def _push_one(job: tuple[str, str, str, str]) -> str:
    from cargohold.client import BlobCache, OCILayout, Reference, push

    layout, tag, target, cache = job
    assert _pusher_client is not None
    result = push(_pusher_client, OCILayout(layout), tag, Reference.parse(target), cache=BlobCache(Path(cache)))
    return str(result.digest)


def make_small_layouts(folder: Path, count: int, layer_size: int) -> list[Path]:
    layouts = []
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        layout = folder / f"img-{i:04d}"
        path = folder / f"layer-{i:04d}"
        blob = images.random_file(path, layer_size)
        images.write_layout(layout, "latest", [(path, blob)], f"small-{i}")
        layouts.append(layout)
    return layouts


class PushPool:
    """Client processes, started before timing, that push OCI layouts with cargohold's library."""

    def __init__(self, parallel: int):
        self.pool = concurrent.futures.ProcessPoolExecutor(parallel, initializer=_pusher_init)
        list(self.pool.map(_noop, range(parallel * 2)))

    def push_all(self, server: Server, layouts: list[Path], prefix: str, cache: Path) -> float:
        """Seconds to push every layout to its own repository ``prefix/img-N``."""
        shutil.rmtree(cache, ignore_errors=True)
        jobs = [(str(layout), "latest", f"{server.address}/{prefix}/{layout.name}:latest", str(cache))
                for layout in layouts]
        started = time.perf_counter()
        list(self.pool.map(_push_one, jobs))
        return time.perf_counter() - started

    def close(self) -> None:
        self.pool.shutdown()


def _noop(_: int) -> None:
    return None


# memory: a big blob pushed and pulled while RSS is sampled


#: the largest single process's peak RSS (MB) seen by the last memory() call
LAST_PEAK_PROCESS = [0.0]


def memory(server: Server, path: Path, blob: Blob) -> float:
    """Peak RSS (MB, all the server's processes together) while ``blob`` is pushed and pulled."""
    with RssSampler(server) as sampler:
        upload_monolithic(server, path, blob)
        download(server, blob)
    LAST_PEAK_PROCESS[0] = sampler.peak_process / 1e6
    return sampler.peak_total / 1e6


# large listings: page latency with many tags and repositories


#: the namespace of the large phase's repositories
LARGE_NAMESPACE = "large"


def set_quota(server: Server, namespace: str, limit: str) -> None:
    subprocess.run([sys.executable, "-m", "cargohold.cli.main", "admin", "--data-dir", str(server.workdir / "data"),
                    "quota", "set", namespace, limit], env={**os.environ, "PYTHONPATH": str(SRC)},
                   check=True, capture_output=True)


def populate_large(server: Server, fixture: Fixture, sizes: Sizes, threads: int = 4) -> float:
    """``large_tags`` tags in large/tags and ``large_repos`` repositories; returns seconds taken."""
    started = time.perf_counter()
    with server.connection() as conn:
        for blob in (fixture.config, fixture.layer):
            images.mount_blob(conn, "large/tags", APP, blob)

    def work(part: int) -> None:
        with server.connection() as conn:
            for i in range(part, sizes.large_tags, threads):
                images.put_manifest(conn, "large/tags", f"tag-{i:06d}", fixture.manifest)
            for i in range(part, sizes.large_repos, threads):
                name = f"large/repo-{i:05d}"
                for blob in (fixture.config, fixture.layer):
                    images.mount_blob(conn, name, APP, blob)
                images.put_manifest(conn, name, "latest", fixture.manifest)

    errors: list[BaseException] = []

    def guarded(part: int) -> None:
        try:
            work(part)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=guarded, args=(p,)) for p in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def page_latency(server: Server, target: str, samples: int) -> dict[str, float]:
    """Milliseconds per request for ``samples`` sequential GETs on one connection."""
    times = []
    with server.connection() as conn:
        expect(conn.request("GET", target), 200)
        for _ in range(samples):
            started = time.perf_counter()
            reply = expect(conn.request("GET", target), 200)
            times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"median_ms": statistics.median(times), "p99_ms": times[int(len(times) * 0.99) - 1],
            "max_ms": times[-1], "bytes": float(reply.length)}


# the machine's own floor


def _writeback_starter() -> Callable[[int, int, int], object] | None:
    """Linux's ``sync_file_range(fd, offset, count, SYNC_FILE_RANGE_WRITE)``, else None."""
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    return lambda fd, offset, count: function(fd, offset, count, 2)


def disk_write(source: Path, target: Path) -> float:
    """MB/s of writing ``source`` (in the page cache) into a new file durably.

    Written as cargohold writes an upload (writeback started every 8 MiB, one
    fdatasync at the end), by one process with nothing else running: what this
    VM's disk gives at that moment, measured in the same runs as the registries
    because it moves from one minute to the next.
    """
    size = source.stat().st_size
    start_writeback = _writeback_starter()
    os.sync()
    started = time.perf_counter()
    with source.open("rb") as src, target.open("wb", buffering=0) as dst:
        offset = 0
        while chunk := src.read(8 << 20):
            dst.write(chunk)
            if start_writeback is not None:
                start_writeback(dst.fileno(), offset, len(chunk))
            offset += len(chunk)
        os.fdatasync(dst.fileno())
    elapsed = time.perf_counter() - started
    target.unlink()
    return size / elapsed / 1e6


# our client against skopeo (both against cargohold), and the floor under both


@dataclass(frozen=True)
class Timing:
    """One client command: wall seconds, and CPU seconds (user + system) of its processes."""

    seconds: float
    cpu: float


def timed(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Timing:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=900)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Timing(elapsed, cpu)


def cargohold_cli() -> tuple[list[str], dict[str, str]]:
    return [sys.executable, "-m", "cargohold.cli.main"], {**os.environ, "PYTHONPATH": str(SRC)}


#: where skopeo keeps its blob-info cache when run as root (containers/image: no flag or variable moves it)
ROOT_BLOB_INFO_CACHE = "/var/lib/containers/cache"


def skopeo_copy(source: str, dest: str, scratch: Path) -> tuple[list[str], dict[str, str]]:
    """``skopeo copy`` doing the work ``cargohold push|pull`` does, and nothing more.

    - ``--preserve-digests``: the manifest is copied as it is. Without it skopeo is free to
      edit it: for layers whose bytes are not what their media type says (the benchmark's
      random "tar+gzip" layers) it detects the compression of every layer and writes a new
      manifest with another digest, work our client does not do.
    - its blob-info cache is a fresh, empty one for each command, as our client's blob cache
      is: the default one is shared by every skopeo, podman and buildah of the user on the
      machine (a BoltDB file, locked per access). As root it lives in
      ``/var/lib/containers/cache``: an empty tmpfs is mounted over it in a private mount
      namespace of the command (the real one is not touched); otherwise it is under
      ``$XDG_DATA_HOME/containers/cache``, pointed at an empty directory.
    """
    tls = "--dest-tls-verify=false" if source.startswith("oci:") else "--src-tls-verify=false"
    argv = ["skopeo", "copy", "--insecure-policy", tls, "--preserve-digests", "-q", source, dest]
    if os.geteuid() == 0:
        wrapper = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                   'mkdir -p "$0" && mount -t tmpfs -o mode=0700 tmpfs "$0" && exec "$@"', ROOT_BLOB_INFO_CACHE]
        return [*wrapper, *argv], dict(os.environ)
    data = scratch / "skopeo-data"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    return argv, {**os.environ, "XDG_DATA_HOME": str(data)}


def registry_digest(server: Server, repository: str, tag: str) -> str:
    """The digest the registry gives for ``repository:tag``."""
    with server.connection() as conn:
        reply = expect(conn.request("HEAD", f"/v2/{repository}/manifests/{tag}", headers={"accept": ACCEPT}), 200)
    return reply.header("docker-content-digest") or ""


def layout_digest(layout: Path, tag: str = "latest") -> str:
    """The digest ``tag`` names in an OCI layout's index.json."""
    index = json.loads((layout / "index.json").read_text())
    for entry in index.get("manifests", []):
        if (entry.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag:
            return str(entry["digest"])
    raise RuntimeError(f"{layout}: no {tag!r} in index.json")


def _same(what: str, got: str, expected: str) -> None:
    if got != expected:
        raise RuntimeError(f"{what} produced manifest {got}, not {expected}: the clients did different work")


def client_push(tool: str, layout: Path, server: Server, repository: str, scratch: Path) -> Timing:
    """Push ``layout``'s ``latest`` to ``repository:latest``; checks the registry has the layout's manifest.

    ``tool`` is cargohold, skopeo, or raw (:mod:`bench.raw_push`, the floor: sockets, no library).
    """
    target = f"{server.address}/{repository}:latest"
    if tool == "cargohold":
        argv, env = cargohold_cli()
        shutil.rmtree(scratch / "cache", ignore_errors=True)
        timing = timed([*argv, "push", "--cache-dir", str(scratch / "cache"), f"oci:{layout}:latest", target], env)
    elif tool == "raw":
        timing = timed([sys.executable, "-m", "bench.raw_push", str(layout), target], cwd=SRC.parent)
    else:
        argv, env = skopeo_copy(f"oci:{layout}:latest", f"docker://{target}", scratch)
        timing = timed(argv, env)
    _same(f"{tool} push", registry_digest(server, repository, "latest"), layout_digest(layout))
    return timing


def client_pull(tool: str, server: Server, repository: str, scratch: Path) -> Timing:
    """Pull ``repository:latest`` into a new OCI layout; checks it names the registry's manifest.

    ``tool`` is cargohold, skopeo, or raw (:mod:`bench.raw_pull`, the floor: sockets, no library).
    """
    source = f"{server.address}/{repository}:latest"
    dest = scratch / f"pulled-{tool}"
    scratch.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(dest, ignore_errors=True)
    shutil.rmtree(scratch / "cache", ignore_errors=True)
    try:
        if tool == "cargohold":
            argv, env = cargohold_cli()
            timing = timed([*argv, "pull", "--cache-dir", str(scratch / "cache"), source, f"oci:{dest}:latest"], env)
        elif tool == "raw":
            timing = timed([sys.executable, "-m", "bench.raw_pull", source, str(dest)], cwd=SRC.parent)
        else:
            argv, env = skopeo_copy(f"docker://{source}", f"oci:{dest}:latest", scratch)
            timing = timed(argv, env)
        _same(f"{tool} pull", layout_digest(dest), registry_digest(server, repository, "latest"))
        return timing
    finally:
        shutil.rmtree(dest, ignore_errors=True)
        shutil.rmtree(scratch / "cache", ignore_errors=True)
