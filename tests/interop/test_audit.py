"""skopeo, podman and cargohold's own client against a token-auth cargohold: each push and pull leaves
exactly the audit entries it should, with who, from where and which request (its X-Request-Id)."""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cargohold.auth.passwords import hash_password
from cargohold.cli.main import main
from cargohold.client import Credentials, RegistryClient, StaticKeychain, TransportOptions
from cargohold.client.cache import BlobCache
from cargohold.client.layout import OCILayout
from cargohold.client.pull import pull, push
from cargohold.reference import Reference
from tests.auth.world import FAST_ENV, store_for
from tests.client.images import build_image, write_layout
from tests.support.servers import CargoholdServer, cargohold

from .tools import BuiltImages, Clients, MakeClients, request_log, requires_podman, requires_skopeo

PASSWORD = "alice-password-1"


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[CargoholdServer]:
    """Token auth; ``alice`` owns the ``alice/`` namespace."""
    store = store_for(tmp_path / "data")
    store.create_user("alice", hash_password(PASSWORD, 4))
    store.close()
    with cargohold(tmp_path, "--auth", "token", env=FAST_ENV) as running:
        yield running


@pytest.fixture()
def clients(make_clients: MakeClients, server: CargoholdServer) -> Clients:
    return make_clients("clients", [server.host])


def audit(data_dir: Path, *args: str) -> list[dict[str, Any]]:
    """``cargohold audit --json``, oldest entry first."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["audit", "--data-dir", str(data_dir), "--json", "--limit", "10000", *args])
    assert code == 0, err.getvalue()
    return [json.loads(line) for line in reversed(out.getvalue().splitlines())]


def access_log(server: CargoholdServer) -> list[dict[str, Any]]:
    """The access log's lines (the log holds other JSON lines too)."""
    return [line for line in request_log(server) if "method" in line and "request_id" in line]


def pull_count(entries: list[dict[str, Any]]) -> int:
    """Manifest GETs recorded (identical ones in one batch are one entry with their count)."""
    return sum(e["detail"].get("count", 1) for e in entries if e["action"] == "manifest.pull")


class Run:
    """What one client did: the audit entries and the access log lines that came after ``start``."""

    def __init__(self, server: CargoholdServer) -> None:
        self.server = server
        entries = audit(server.data_dir)
        self.after_seq = entries[-1]["seq"] if entries else 0
        self.after_line = len(access_log(server))

    def requests(self) -> list[dict[str, Any]]:
        return access_log(self.server)[self.after_line:]

    def entries(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(entries, requests); waits for the pulls, written within about a second."""
        deadline = time.monotonic() + 10
        while True:
            requests = self.requests()
            pulls = [r for r in requests if r["method"] == "GET" and "/manifests/" in r["path"] and r["status"] == 200]
            entries = [e for e in audit(self.server.data_dir) if e["seq"] > self.after_seq]
            if pull_count(entries) >= len(pulls):
                return entries, requests
            assert time.monotonic() < deadline, "the pulls were not recorded within 10 s"
            time.sleep(0.2)


def check(run: Run, repository: str, user_agent: str, *, pushed: set[str] | None, tags: list[str],
          created: bool) -> list[dict[str, Any]]:
    """The entries of what the client did are exactly those its requests call for."""
    entries, requests = run.entries()
    by_id = {r["request_id"]: r for r in requests}

    def of(action: str) -> list[dict[str, Any]]:
        return [e for e in entries if e["action"] == action]

    def answered(method: str, part: str, status: int) -> list[dict[str, Any]]:
        return [r for r in requests if r["method"] == method and part in r["path"] and r["status"] == status]

    registry = [e for e in entries if e["action"] not in ("login", "token.issue")]
    for entry in registry:
        request = by_id[entry["request_id"]]  # the request it records, by the id its response carried
        assert (entry["actor"], entry["actor_kind"], entry["address"]) == ("alice", "user", "127.0.0.1"), entry
        assert entry["user_agent"].startswith(user_agent), entry
        assert entry["repository"] == repository, entry
        expected = {
            "manifest.push": ("PUT", "/manifests/"), "manifest.pull": ("GET", "/manifests/"),
            # an upload session's final PUT, or a one-request POST ?digest=
            "blob.push": ("POST" if request["path"].endswith("/uploads/") else "PUT", "/blobs/uploads/"),
            "blob.mount": ("POST", "/blobs/uploads/"), "repository.create": (request["method"], "/v2/"),
        }[entry["action"]]
        assert (request["method"], expected[1] in request["path"]) == (expected[0], True), (entry, request)
    # one manifest push per tag, one blob push per uploaded blob, one pull per manifest GET, one mount per mount
    pushes = of("manifest.push")
    assert [p["tag"] for p in pushes] == tags and [p["detail"]["tags"] for p in pushes] == [[t] for t in tags]
    assert len(pushes) == len(answered("PUT", "/manifests/", 201))
    if pushed is not None:
        assert {b["digest"] for b in of("blob.push")} == pushed and len(of("blob.push")) == len(pushed)
    assert len(of("blob.push")) + len(of("blob.mount")) == (
        len(answered("PUT", "/blobs/uploads/", 201)) + len(answered("POST", "/blobs/uploads/", 201)))
    assert pull_count(entries) == len(answered("GET", "/manifests/", 200))
    assert not [e for e in entries if e["action"] not in (
        "login", "token.issue", "manifest.push", "manifest.pull", "blob.push", "blob.mount", "repository.create")]
    assert len(of("repository.create")) == (1 if created else 0)
    # every token the client fetched is an issue; a login each, but for those given for a refresh token
    tokens = answered("GET", "/auth/token", 200) + answered("POST", "/auth/token", 200)
    assert len(of("token.issue")) == len(tokens) > 0
    assert 0 < len(of("login")) <= len(tokens) and {e["result"] for e in of("login")} == {"ok"}
    for entry in of("login") + of("token.issue"):
        assert (entry["actor"], entry["address"], entry["request_id"] in by_id) == ("alice", "127.0.0.1", True)
    assert any(s.startswith(f"repository:{repository}:") for e in of("token.issue") for s in e["detail"]["scopes"]), [
        e["detail"] for e in of("token.issue")]
    return entries


def blobs_of(layout_manifest: dict[str, Any]) -> set[str]:
    return {layout_manifest["config"]["digest"], *(layer["digest"] for layer in layout_manifest["layers"])}


@requires_skopeo
def test_skopeo_push_and_pull(clients: Clients, images: BuiltImages, server: CargoholdServer, tmp_path: Path) -> None:
    creds = f"alice:{PASSWORD}"
    small = images.oci.manifest("small")
    assert len(blobs_of(small)) == 3
    run = Run(server)
    clients.skopeo.copy(f"oci:{images.oci.path}:small", f"docker://{server.host}/alice/app:v1",
                        "--dest-creds", creds)
    clients.skopeo.copy(f"oci:{images.oci.path}:small", f"docker://{server.host}/alice/app:v2",
                        "--dest-creds", creds)
    clients.skopeo.copy(f"docker://{server.host}/alice/app:v1", f"oci:{tmp_path / 'out'}:v1", "--src-creds", creds)
    entries = check(run, "alice/app", "skopeo/", pushed=blobs_of(small), tags=["v1", "v2"], created=True)
    pushes = [e for e in entries if e["action"] == "manifest.push"]
    assert {p["digest"] for p in pushes} == {images.oci.descriptor("small")["digest"]}
    assert pushes[0]["size"] == images.oci.descriptor("small")["size"]


@requires_podman
@requires_skopeo
def test_podman_pull_and_push_mounts(clients: Clients, images: BuiltImages, server: CargoholdServer) -> None:
    host = server.host
    clients.skopeo.copy(f"oci:{images.oci.path}:small", f"docker://{host}/alice/app:v1",
                        "--dest-creds", f"alice:{PASSWORD}")
    clients.podman.run("login", "--tls-verify=false", "-u", "alice", "-p", PASSWORD, host)
    run = Run(server)
    clients.podman.run("pull", "--tls-verify=false", f"{host}/alice/app:v1")
    check(run, "alice/app", "containers/", pushed=set(), tags=[], created=False)
    run = Run(server)
    clients.podman.run("tag", f"{host}/alice/app:v1", f"{host}/alice/copy:v1")
    clients.podman.run("push", "--tls-verify=false", f"{host}/alice/copy:v1")
    # podman mounts what it pulled from alice/app, and uploads what it had to compress again
    entries = check(run, "alice/copy", "containers/", pushed=None, tags=["v1"], created=True)
    mounts = [e for e in entries if e["action"] == "blob.mount"]
    assert mounts and all(m["detail"] == {"from": "alice/app"} for m in mounts)
    pushed = json.loads(clients.skopeo.inspect_raw(f"docker://{host}/alice/copy:v1"))
    assert {e["digest"] for e in entries if e["action"] in ("blob.mount", "blob.push")} == blobs_of(pushed)


def test_cargohold_client_push_and_pull(server: CargoholdServer, tmp_path: Path) -> None:
    image = build_image((1200, 3000))
    assert len(image.blobs) == 3
    ref = Reference.parse(f"{server.host}/alice/own:v1")
    options = TransportOptions(insecure_all=True, retries=1, backoff=0.01)
    run = Run(server)
    with RegistryClient(keychain=StaticKeychain(Credentials("alice", PASSWORD)), options=options) as client:
        push(client, write_layout(tmp_path / "src", image, "v1"), "v1", ref, cache=BlobCache(tmp_path / "c"))
        pull(client, ref, OCILayout(tmp_path / "dst"), tag="v1", cache=BlobCache(tmp_path / "c2"))
    check(run, "alice/own", "cargohold-client/", pushed={str(d) for d in image.blobs}, tags=["v1"], created=True)
