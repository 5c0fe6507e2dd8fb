"""The floor for a push on this machine: the least a client can do to push an OCI layout's image.

    python -m bench.raw_push LAYOUT HOST:PORT/REPOSITORY:TAG [--jobs 4]

No client library: for each blob, in ``--jobs`` threads with a keep-alive
socket each, it is hashed from the page cache and checked against its digest,
then ``HEAD`` (is it there?), ``POST`` (start an upload) and one ``PUT
?digest=`` whose body goes out with ``sendfile``; the manifest is PUT last.
That is the requests ``skopeo copy oci:… docker://…`` and ``cargohold push``
make for each blob (skopeo sends a PATCH and an empty PUT where this sends one
PUT), without anything else: no cache, no mounts, no retries. The registry's
own work (receive, hash, write, fsync) is all in it, so its wall time as a
whole process is what the registry and this machine allow.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .httpc import Connection, expect

_local = threading.local()


def _conn(host: str, port: int) -> Connection:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = Connection(host, port)
    return conn


def _send(host: str, port: int, repository: str, blobs: Path, digest: str, size: int) -> None:
    path = blobs / digest.split(":", 1)[1]
    with path.open("rb") as file:
        if "sha256:" + hashlib.file_digest(file, "sha256").hexdigest() != digest:
            raise RuntimeError(f"{path}: digest mismatch")
        conn = _conn(host, port)
        if conn.request("HEAD", f"/v2/{repository}/blobs/{digest}").status == 200:
            return
        start = expect(conn.request("POST", f"/v2/{repository}/blobs/uploads/"), 202)
        location = start.header("location") or ""
        expect(conn.request("PUT", f"{location}{'&' if '?' in location else '?'}digest={digest}",
                            file=(file, 0, size), headers={"content-type": "application/octet-stream"}), 201)


def push(layout: Path, reference: str, jobs: int = 4) -> str:
    """Push the image ``layout``'s index.json names first (an image manifest); returns its digest."""
    address, _, rest = reference.partition("/")
    repository, _, tag = rest.rpartition(":")
    host, _, port = address.rpartition(":")
    entry = json.loads((layout / "index.json").read_text())["manifests"][0]
    blobs = layout / "blobs" / "sha256"
    raw = (blobs / entry["digest"].split(":", 1)[1]).read_bytes()
    manifest = json.loads(raw)
    wanted = [(d["digest"], d["size"]) for d in [manifest["config"], *manifest["layers"]]]
    with ThreadPoolExecutor(jobs) as pool:
        for future in [pool.submit(_send, host, int(port), repository, blobs, d, s) for d, s in wanted]:
            future.result()
    with Connection(host, int(port)) as conn:
        reply = expect(conn.request("PUT", f"/v2/{repository}/manifests/{tag}", body=raw,
                                    headers={"content-type": entry["mediaType"]}), 201)
    return reply.header("docker-content-digest") or ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.raw_push", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("layout", type=Path, help="OCI layout directory")
    parser.add_argument("reference", help="HOST:PORT/REPOSITORY:TAG (plain HTTP)")
    parser.add_argument("--jobs", type=int, default=4, help="parallel blob uploads (default 4)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    digest = push(args.layout, args.reference, args.jobs)
    print(f"{digest} {time.perf_counter() - started:.3f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
