"""Flame graphs of cargohold's hot paths: ``python -m bench.profile [WORKLOAD ...] --out DIR``.

Starts one cargohold (fresh storage, one worker), attaches ``py-spy record``
to the worker process for the length of each workload, and writes
``DIR/<workload>.svg``. Needs py-spy (``pip install py-spy``); it says so if missing.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import images, workloads
from .servers import Server
from .workloads import Sizes

WORKLOADS = ("upload_monolithic", "upload_chunked", "download", "manifest_get", "blob_head", "tags_list",
             "push_images")

_SUFFIX = {"flamegraph": "svg", "raw": "txt", "speedscope": "json"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("workloads", nargs="*", default=list(WORKLOADS), help=f"any of {', '.join(WORKLOADS)}")
    parser.add_argument("--out", default="flamegraphs", help="folder for the SVGs")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--format", default="flamegraph", choices=["flamegraph", "raw", "speedscope"],
                        help="py-spy output format (raw: collapsed stacks, to read as text)")
    parser.add_argument("--native", action="store_true", help="include native frames (py-spy --native)")
    args = parser.parse_args(argv)
    if shutil.which("py-spy") is None and not (Path(sys.executable).parent / "py-spy").exists():
        print("python -m bench.profile: py-spy is missing (pip install py-spy)", file=sys.stderr)
        return 2
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = Sizes(duration=8.0)
    work = Path(tempfile.mkdtemp(prefix="cargohold-profile-"))
    server = Server("cargohold", work / "server", extra_args=["--workers", "1"]).start()
    try:
        fixture = workloads.setup(server, sizes)
        worker = max(server.pids())  # granian's worker is the child
        big = work / "big.bin"
        blob = images.random_file(big, sizes.big)
        layouts = workloads.make_small_layouts(work / "small", sizes.images, sizes.image_layer) \
            if "push_images" in args.workloads else []
        pool = workloads.PushPool(sizes.image_parallel) if layouts else None
        for name in args.workloads:
            argv_spy = [spy, "record", "--pid", str(worker), "--rate", str(args.rate), "--output",
                        str(out / f"{name}.{_SUFFIX[args.format]}"), "--format", args.format, "--nonblocking"]
            if args.native:
                argv_spy.append("--native")
            recorder = subprocess.Popen(argv_spy, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(1.0)
            started = time.perf_counter()
            if name == "upload_monolithic":
                for _ in range(3):
                    blob = images.refresh(big)
                    result = workloads.upload_monolithic(server, big, blob)
            elif name == "upload_chunked":
                for _ in range(3):
                    blob = images.refresh(big)
                    result = workloads.upload_chunked(server, big, blob, sizes.chunk)
            elif name == "download":
                for _ in range(5):
                    result = workloads.download(server, blob)
            elif name == "manifest_get":
                result = workloads.manifest_get(server, sizes)
            elif name == "blob_head":
                result = workloads.blob_head(server, sizes, fixture)
            elif name == "tags_list":
                result = workloads.tags_list(server, sizes)
            elif name == "push_images" and pool is not None:
                result = pool.push_all(server, layouts, f"profile/{time.time_ns()}", work / "cache")
            print(f"{name}: {result:.1f} ({time.perf_counter() - started:.1f} s)", flush=True)
            recorder.send_signal(signal.SIGINT)
            _, err = recorder.communicate(timeout=60)
            if recorder.returncode not in (0, -signal.SIGINT):
                print(err.decode(errors="replace")[-1000:], file=sys.stderr)
        if pool is not None:
            pool.close()
    finally:
        server.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
