"""Manifest GET by tag against cargohold on SQLite and on PostgreSQL, side by side on this machine.

``python -m bench.metadata_backends [--seconds 8] [--runs 3] [--workers 2]``: a throwaway PostgreSQL 15
cluster (as the tests start it, on a loopback port, fsync off), two servers with the filesystem blob
store, one image pushed to each, then wrk on the tag, alternating SQLite and PostgreSQL each run.
PostgreSQL shares the machine's cores with the servers and wrk, as it would on one host.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
from pathlib import Path

import httpx
from tests.support.postgres import start_cluster
from tests.support.servers import cargohold

from .workloads import wrk

MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
REPOSITORY = "bench/app"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_image(url: str) -> None:
    config, layer = b"{}", b"x" * 1000
    with httpx.Client(base_url=url) as client:
        for blob in (config, layer):
            reply = client.post(f"/v2/{REPOSITORY}/blobs/uploads/", params={"digest": _digest(blob)}, content=blob)
            reply.raise_for_status()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": MEDIA_TYPE,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config),
                       "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _digest(layer),
                        "size": len(layer)}],
        }).encode()
        client.put(f"/v2/{REPOSITORY}/manifests/latest", content=manifest,
                   headers={"Content-Type": MEDIA_TYPE}).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.metadata_backends", description=__doc__)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    cluster = start_cluster(Path(tempfile.mkdtemp(prefix="cargohold-pg-")))
    serve = ("--workers", str(args.workers), "--log-level", "warning")
    try:
        with cargohold(Path(tempfile.mkdtemp()), *serve) as sqlite, \
                cargohold(Path(tempfile.mkdtemp()), *serve, database_url=cluster.fresh_database()) as postgres:
            servers = {"sqlite": sqlite, "postgres": postgres}
            rates: dict[str, list[float]] = {name: [] for name in servers}
            for server in servers.values():
                push_image(server.url)
            for _ in range(args.runs):
                for name, server in servers.items():
                    url = f"{server.url}/v2/{REPOSITORY}/manifests/latest"
                    rates[name].append(wrk(url, args.seconds, headers={"Accept": MEDIA_TYPE}))
    finally:
        cluster.stop()
    for name, samples in rates.items():
        print(f"{name:9} median {statistics.median(samples):8.0f} req/s  runs {[round(s) for s in samples]}")
    print(f"postgres/sqlite: {statistics.median(rates['postgres']) / statistics.median(rates['sqlite']):.2f}")


if __name__ == "__main__":
    main()
