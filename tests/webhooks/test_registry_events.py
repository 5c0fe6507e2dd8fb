"""Events of real requests to a real server reach the receivers: as Distribution 2.8 sends them for the same
requests (the same notifications configuration on both), and in Quay's format; a push does not wait for them."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import free_port, stop_process, wait_for_http
from tests.webhooks.receiver import Received, receiving
from tests.webhooks.support import delivery_rows, serving

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _push_image(client: httpx.Client, repository: str, tag: str) -> str:
    """Blobs by POST then PUT (as most clients push), then the manifest by tag; its digest."""

    def blob(data: bytes, media_type: str) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        location = client.post(f"/v2/{repository}/blobs/uploads/").headers["location"]
        put = client.put(location + ("&" if "?" in location else "?") + f"digest={digest}", content=data)
        assert put.status_code == 201, put.text
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    config = blob(b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}',
                  "application/vnd.oci.image.config.v1+json")
    layer = blob(b"layer " * 100, "application/vnd.oci.image.layer.v1.tar+gzip")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
                           "layers": [layer]}).encode()
    put = client.put(f"/v2/{repository}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST})
    assert put.status_code == 201, put.text
    return str(put.headers["docker-content-digest"])


def _exercise(base: str) -> None:
    """One push of a 2-blob image, a pull by tag, a delete by digest."""
    with httpx.Client(base_url=base, headers={"User-Agent": "parity-test/1.0"}, timeout=30) as client:
        digest = _push_image(client, "team/app", "1.0")
        assert client.get("/v2/team/app/manifests/1.0", headers={"Accept": OCI_MANIFEST}).status_code == 200
        assert client.delete(f"/v2/team/app/manifests/{digest}").status_code == 202


def _normal(event: dict[str, Any], host: str) -> dict[str, Any]:
    """What may differ between two registries left out: ids, times, the client's port, the node."""
    target = {k: (v.replace(host, "HOST") if k == "url" else v) for k, v in event["target"].items()}
    request = {k: (v.replace(host, "HOST") if k == "host" else v) for k, v in event["request"].items()
               if k not in ("id", "addr")}
    assert set(event) == {"id", "timestamp", "action", "target", "request", "actor", "source"}
    assert set(event["source"]) == {"addr", "instanceID"} and set(event["request"]) >= {"id", "addr"}
    return {"action": event["action"], "target": target, "request": request, "actor": event["actor"]}


@contextlib.contextmanager
def distribution(tmp: Path, endpoints: list[dict[str, Any]]) -> Iterator[str]:
    """Distribution 2.8 (Debian's docker-registry) with these notification endpoints; its address."""
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry (Distribution) is not installed")
    port = free_port()
    config = tmp / "distribution.yml"
    config.write_text(json.dumps({
        "version": 0.1, "log": {"level": "info"},
        "storage": {"filesystem": {"rootdirectory": str(tmp / "distribution-data")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "parity"},
        "notifications": {"endpoints": endpoints},
    }))
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    with open(tmp / "distribution.log", "ab") as log:
        process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log, env=env)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v2/", process)
        yield f"127.0.0.1:{port}"
    finally:
        stop_process(process)


def _events(requests: list[Received], host: str) -> list[dict[str, Any]]:
    return [_normal(event, host) for request in requests for event in request.events]


def _key(event: dict[str, Any]) -> str:
    return json.dumps(event, sort_keys=True)


def test_the_same_requests_give_the_events_distribution_sends(tmp_path: Path) -> None:
    with receiving() as ours, receiving() as theirs:
        def endpoint(url: str) -> list[dict[str, Any]]:  # the same block in both configurations
            return [{"name": "hook", "url": url, "timeout": "2s", "backoff": "100ms",
                     "headers": {"X-Origin": ["registry"]}}]

        with distribution(tmp_path, endpoint(theirs.url)) as host:
            _exercise(f"http://{host}")
            theirs.wait_for_events(6)
            expected = _events(theirs.requests(), host)
        with serving(tmp_path, endpoint(ours.url)) as server:
            _exercise(server.url)
            ours.wait_for_events(5)
            time.sleep(1.5)
            got_requests = ours.requests()
            got = _events(ours.requests(), server.host)
            rows = delivery_rows(server.data_dir)
    # Distribution also sends a delete of each tag a deleted manifest had; cargohold's manifest delete stands for it
    untag = {"action": "delete", "target": {"repository": "team/app", "tag": "1.0"},
             "request": {"method": "DELETE", "host": "HOST", "useragent": "parity-test/1.0"}, "actor": {}}
    assert untag in expected
    expected.remove(untag)
    assert sorted(map(_key, got)) == sorted(map(_key, expected))
    assert all(r.headers["X-Origin"] == "registry" for r in got_requests)
    # the push's events come in the order of the requests: blobs, then the manifest
    assert [e["action"] for e in got[:3]] == ["push"] * 3 and got[2]["target"]["tag"] == "1.0"
    assert {r["state"] for r in rows} == {"delivered"}


def test_quay_format_hears_of_tag_setting_pushes_and_a_push_does_not_wait(tmp_path: Path) -> None:
    with receiving() as quay, receiving(behaviour="hang") as hung:
        endpoints = [{"name": "quay", "url": quay.url, "format": "quay"},
                     *({"name": f"slow{i}", "url": hung.url, "timeout": "30s"} for i in range(3))]
        with serving(tmp_path, endpoints) as server, httpx.Client(base_url=server.url, timeout=30) as client:
            started = time.monotonic()
            _push_image(client, "acme/web", "2.1")
            done = time.monotonic()
            [got] = quay.wait_for(1)
            hung.wait_for(1)
    pushed = done - started
    # the worker that committed the push woke its deliverer: no wait for the next poll (1 s)
    assert got.at - done < 0.5
    assert got.json == {
        "repository": "acme/web", "namespace": "acme", "name": "web", "docker_url": f"{server.host}/acme/web",
        "homepage": f"{server.url}/v2/acme/web/tags/list", "updated_tags": ["2.1"],
    }
    assert pushed < 10  # receivers that never answer (30 s each) are not waited for
