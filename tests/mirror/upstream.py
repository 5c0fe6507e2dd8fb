"""Upstreams for the mirror tests: Distribution 2.8 with htpasswd auth, and images pushed to any registry
over plain HTTP (multi-arch indexes, signatures by cosign's tag scheme or as OCI referrers)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import bcrypt
import httpx

from tests.support.servers import free_port, stop_process, wait_for_http

OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
OCI_LAYER: Final = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY: Final = "application/vnd.oci.empty.v1+json"
COSIGN_SIG: Final = "application/vnd.dev.cosign.artifact.sig.v1+json"
NOTATION_SIG: Final = "application/vnd.cncf.notary.signature"
SBOM: Final = "application/spdx+json"
USER: Final = "puller"
PASSWORD: Final = "upstream-password"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Upstream:
    host: str
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=(USER, PASSWORD), timeout=30)

    def manifest_gets(self) -> int:
        """The manifest GETs its access log shows so far."""
        return sum(1 for line in self.log_path.read_text(errors="replace").splitlines()
                   if '"GET /v2/' in line and "/manifests/" in line)


@contextlib.contextmanager
def distribution_with_htpasswd(tmp: Path) -> Iterator[Upstream]:
    """Distribution 2.8 (Debian ``docker-registry``) on a free port, deletes on, one htpasswd user."""
    port = free_port()
    (tmp / "upstream-data").mkdir(parents=True)
    htpasswd = tmp / "upstream.htpasswd"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$", 1)
    htpasswd.write_text(f"{USER}:{hashed}\n")
    config = tmp / "upstream.yml"
    config.write_text(
        "version: 0.1\nlog: {level: info}\n"
        f"storage:\n  filesystem: {{rootdirectory: {tmp / 'upstream-data'}}}\n  delete: {{enabled: true}}\n"
        f"auth:\n  htpasswd: {{realm: upstream, path: {htpasswd}}}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: mirror-test-secret\n"
    )
    log_path = tmp / "upstream.log"
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    with open(log_path, "ab") as log:
        process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log, env=env)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v2/", process, auth=(USER, PASSWORD))
        yield Upstream(f"127.0.0.1:{port}", log_path, process)
    finally:
        stop_process(process)


def push_blob(client: httpx.Client, repo: str, data: bytes) -> dict[str, Any]:
    """Push ``data`` (monolithic, POST then PUT as Distribution 2.8 takes it); its descriptor sans type."""
    digest = sha256(data)
    if client.head(f"/v2/{repo}/blobs/{digest}").status_code != 200:
        started = client.post(f"/v2/{repo}/blobs/uploads/")
        assert started.status_code == 202, started.text
        location = httpx.URL(started.headers["location"]).copy_merge_params({"digest": digest})
        done = client.put(location, content=data,
                          headers={"Content-Type": "application/octet-stream"})
        assert done.status_code == 201, done.text
    return {"digest": digest, "size": len(data)}


def put_manifest(client: httpx.Client, repo: str, reference: str, document: dict[str, Any]) -> str:
    raw = json.dumps(document, indent=2).encode()
    response = client.put(f"/v2/{repo}/manifests/{reference}", content=raw,
                          headers={"Content-Type": document["mediaType"]})
    assert response.status_code == 201, response.text
    return sha256(raw)


def push_image(client: httpx.Client, repo: str, seed: str, architecture: str = "amd64") -> dict[str, Any]:
    """One image (config and a layer) for linux/``architecture``; its descriptor (not tagged)."""
    config = push_blob(client, repo, json.dumps({"architecture": architecture, "os": "linux", "seed": seed}).encode())
    layer = push_blob(client, repo, f"layer {seed} {architecture}".encode() * 200)
    document = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, **config}, "layers": [{"mediaType": OCI_LAYER, **layer}]}
    raw = json.dumps(document, indent=2).encode()
    digest = put_manifest(client, repo, sha256(raw), document)
    return {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(raw),
            "platform": {"architecture": architecture, "os": "linux"}}


def push_index(client: httpx.Client, repo: str, tag: str, architectures: tuple[str, ...] = ("amd64", "arm64")) -> str:
    """A multi-arch index of one image per architecture, tagged ``tag``; its digest."""
    children = [push_image(client, repo, tag, architecture) for architecture in architectures]
    return put_manifest(client, repo, tag, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children})


def sign_by_tag(client: httpx.Client, repo: str, subject: str) -> str:
    """A cosign-style signature: an image tagged ``sha256-<hex>.sig``; its digest."""
    payload = push_blob(client, repo, json.dumps({"critical": {"image": {"docker-manifest-digest": subject}}}).encode())
    config = push_blob(client, repo, b"{}")
    document = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": OCI_CONFIG, **config},
                "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", **payload,
                            "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ"}}]}
    return put_manifest(client, repo, subject.replace(":", "-") + ".sig", document)


def push_referrer(client: httpx.Client, repo: str, subject: str, subject_size: int, artifact_type: str) -> str:
    """An OCI 1.1 artifact whose ``subject`` is the manifest ``subject``; its digest (pushed by digest)."""
    empty = push_blob(client, repo, b"{}")
    body = push_blob(client, repo, f"{artifact_type} of {subject}".encode())
    document = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
                "config": {"mediaType": OCI_EMPTY, **empty}, "layers": [{"mediaType": artifact_type, **body}],
                "subject": {"mediaType": OCI_INDEX, "digest": subject, "size": subject_size}}
    raw = json.dumps(document, indent=2).encode()
    return put_manifest(client, repo, sha256(raw), document)
