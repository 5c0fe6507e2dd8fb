"""Online garbage collection on each setup (SQLite + filesystem, PostgreSQL + S3), against a running server:
``cargohold gc`` (and ``/admin/v1/gc``) deletes what no tag, index or subject keeps once its grace period is
over, keeps shared layers and everything a tag reaches (skopeo pulls every kept tag), a dry run lists what
the real run then deletes, and a collection between a blob's upload and its manifest's PUT makes the PUT
answer MANIFEST_BLOB_UNKNOWN, after which the client's retry succeeds."""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest

from cargohold.cli.main import main
from tests.interop.tools import Clients, requires_skopeo
from tests.support.backends import Setup
from tests.support.servers import CargoholdServer, cargohold

from .conftest import WORKERS
from .helpers import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, codes, descriptor, push_blob, put_manifest, sha256

#: the server queues, the command collects: no job of the server's own runs meanwhile
SERVER_ENV = {"CARGOHOLD_GC_ENABLED": "false"}
NO_GRACE = {"CARGOHOLD_GC_GRACE_PERIOD": "0", "CARGOHOLD_GC_UNTAGGED_GRACE_PERIOD": "0"}


@pytest.fixture()
def server(tmp_path: Path, setup: Setup) -> Iterator[CargoholdServer]:
    with cargohold(tmp_path, *WORKERS, env={**SERVER_ENV, **setup.env}, database_url=setup.database_url) as running:
        yield running


@pytest.fixture()
def client(server: CargoholdServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def gc(server: CargoholdServer, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``cargohold gc --json`` on the server's data, with no grace periods unless ``env`` says otherwise."""
    out, err = io.StringIO(), io.StringIO()
    where = ["--data-dir", str(server.data_dir), *(["--database-url", server.database_url]
                                                    if server.database_url else [])]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            mock.patch.dict(os.environ, {**server.env, **NO_GRACE, **(env or {})}):
        code = main(["gc", *where, "--json", *args])
    assert code == 0, (out.getvalue(), err.getvalue())
    found: dict[str, Any] = json.loads(out.getvalue())
    return found


def image(c: httpx.Client, repo: str, layers: list[bytes], seed: str, *, push: bool = True, **fields: Any) -> bytes:
    """An image of ``layers`` (pushed into ``repo`` with a config of its own), its manifest not pushed."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed, "repo": repo}).encode()
    if push:
        for blob in [config, *layers]:
            push_blob(c, repo, blob)
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, layer) for layer in layers], **fields,
    }).encode()


def config_of(raw: bytes) -> str:
    return str(json.loads(raw)["config"]["digest"])


def tagged(c: httpx.Client, repo: str, tag: str, raw: bytes, media_type: str = OCI_MANIFEST) -> str:
    response = put_manifest(c, repo, tag, raw, media_type)
    assert response.status_code == 201, response.text
    return sha256(raw)


def stored(server: CargoholdServer) -> set[str]:
    return set(server.stored().blobs())


def pullable(c: httpx.Client, repo: str, reference: str) -> None:
    """The manifest and every blob it names answer 200 (what a pull reads)."""
    response = c.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"})
    assert response.status_code == 200, response.text
    manifest = response.json()
    for child in manifest.get("manifests", []):
        pullable(c, repo, child["digest"])
    for blob in [*([manifest["config"]] if "config" in manifest else []), *manifest.get("layers", [])]:
        got = c.get(f"/v2/{repo}/blobs/{blob['digest']}")
        assert got.status_code == 200 and sha256(got.content) == blob["digest"], (repo, blob, got.status_code)


SHARED = b"a layer two repositories share " * 300


def test_deleted_tags_free_their_bytes_and_shared_layers_stay(server: CargoholdServer, client: httpx.Client,
                                                              tmp_path: Path) -> None:
    one = image(client, "gc/one", [SHARED, b"only in one " * 200], "one")
    two = image(client, "gc/two", [SHARED, b"only in two " * 200], "two")
    one_digest = tagged(client, "gc/one", "v1", one)
    tagged(client, "gc/two", "v1", two)
    before = stored(server)
    assert gc(server)["manifests"] == 0 and stored(server) == before  # everything is tagged

    assert client.delete("/v2/gc/one/manifests/v1").status_code == 202
    # inside the grace periods nothing goes
    assert gc(server, env={"CARGOHOLD_GC_UNTAGGED_GRACE_PERIOD": "1h"})["manifests"] == 0
    report = gc(server, env={"CARGOHOLD_GC_GRACE_PERIOD": "1h"})
    assert report["repositories"]["gc/one"]["manifests"] == [one_digest] and report["blobs"] == 0
    assert stored(server) == before
    report = gc(server)
    only_one = sha256(b"only in one " * 200)
    assert sorted(report["deleted_blobs"]) == sorted([only_one, config_of(one)])
    assert report["bytes_freed"] == len(b"only in one " * 200) + json.loads(one)["config"]["size"]
    assert sorted(report["repositories"]["gc/one"]["blobs"]) == sorted([sha256(SHARED), only_one, config_of(one)])
    assert stored(server) == before - {only_one, config_of(one)}
    assert client.get(f"/v2/gc/one/manifests/{one_digest}").status_code == 404
    assert client.head(f"/v2/gc/one/blobs/{sha256(SHARED)}").status_code == 404  # unlinked from gc/one
    pullable(client, "gc/two", "v1")
    assert gc(server)["manifests"] == 0  # nothing left to do
    history = gc(server, "--history")
    assert [run["bytes_freed"] for run in history[:2]] == [0, report["bytes_freed"]]
    assert history[1]["deleted_blobs"] == report["deleted_blobs"]
    assert history[2]["repositories"]["gc/one"]["manifests"] == [one_digest]


def test_a_moved_tag_frees_the_old_image(server: CargoholdServer, client: httpx.Client) -> None:
    old = tagged(client, "gc/moved", "latest", image(client, "gc/moved", [b"old layer " * 100], "old"))
    new_raw = image(client, "gc/moved", [b"new layer " * 100], "new")
    tagged(client, "gc/moved", "latest", new_raw)
    report = gc(server)
    assert report["repositories"]["gc/moved"]["manifests"] == [old]
    assert sha256(b"old layer " * 100) in report["deleted_blobs"]
    assert sha256(b"new layer " * 100) not in report["deleted_blobs"]
    pullable(client, "gc/moved", "latest")


def index_with_referrer(client: httpx.Client, repo: str) -> tuple[str, list[str], str]:
    children = []
    for arch in ("amd64", "arm64"):
        raw = image(client, repo, [f"{arch} layer of {repo} ".encode() * 50], arch)
        assert put_manifest(client, repo, sha256(raw), raw, OCI_MANIFEST).status_code == 201
        children.append(sha256(raw))
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": d, "size": 1, "platform": {"os": "linux", "architecture": a}}
        for d, a in zip(children, ("amd64", "arm64"), strict=True)]}).encode()
    # sizes must be right: fetch each child's length
    entries = json.loads(index)["manifests"]
    for entry in entries:
        entry["size"] = len(client.get(f"/v2/{repo}/manifests/{entry['digest']}",
                                       headers={"Accept": OCI_MANIFEST}).content)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    index_digest = tagged(client, repo, "multi", index, OCI_INDEX)
    empty = b"{}"
    push_blob(client, repo, empty)
    referrer = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sbom",
        "config": descriptor("application/vnd.oci.empty.v1+json", empty),
        "layers": [descriptor(OCI_LAYER, push_bytes(client, repo, f"sbom of {repo}".encode()))],
        "subject": {"mediaType": OCI_INDEX, "digest": index_digest, "size": len(index)},
    }).encode()
    assert put_manifest(client, repo, sha256(referrer), referrer, OCI_MANIFEST).status_code == 201
    return index_digest, children, sha256(referrer)


def push_bytes(client: httpx.Client, repo: str, data: bytes) -> bytes:
    push_blob(client, repo, data)
    return data


def test_index_children_and_referrers(server: CargoholdServer, client: httpx.Client) -> None:
    kept = {repo: index_with_referrer(client, repo) for repo in ("gc/keep", "gc/collect")}
    assert gc(server)["manifests"] == 0  # children kept by their index, the referrer by its subject
    for repo in kept:
        pullable(client, repo, "multi")
        assert client.delete(f"/v2/{repo}/manifests/multi").status_code == 202
    keep = gc(server, "--repository", "gc/keep", env={"CARGOHOLD_GC_REFERRERS": "keep"})
    index, children, referrer = kept["gc/keep"]
    assert sorted(keep["repositories"]["gc/keep"]["manifests"]) == sorted([index, *children])
    assert "gc/collect" not in keep["repositories"]
    assert client.get(f"/v2/gc/keep/manifests/{referrer}").status_code == 200
    collect = gc(server, "--repository", "gc/collect")
    index, children, referrer = kept["gc/collect"]
    assert sorted(collect["repositories"]["gc/collect"]["manifests"]) == sorted([index, *children, referrer])
    assert client.get(f"/v2/gc/collect/manifests/{referrer}").status_code == 404


def scenario(client: httpx.Client, prefix: str) -> None:
    """Shared layers, a deleted tag, a moved tag, an untagged index over its children, a blob never used."""
    a = tagged(client, f"{prefix}/a", "v1", image(client, f"{prefix}/a", [SHARED, b"a only " * 99], "a"))
    tagged(client, f"{prefix}/b", "v1", image(client, f"{prefix}/b", [SHARED, b"b only " * 99], "b"))
    tagged(client, f"{prefix}/b", "v1", image(client, f"{prefix}/b", [SHARED, b"b new " * 99], "b2"))
    index_with_referrer(client, f"{prefix}/c")
    assert client.delete(f"/v2/{prefix}/c/manifests/multi").status_code == 202
    assert client.delete(f"/v2/{prefix}/a/manifests/{a}").status_code == 202
    push_blob(client, f"{prefix}/d", b"uploaded, never referenced")


def test_a_dry_run_lists_what_the_real_run_deletes(server: CargoholdServer, client: httpx.Client) -> None:
    scenario(client, "dry")
    before = stored(server)
    dry = gc(server, "--dry-run")
    assert dry["dry_run"] and dry["manifests"] == 5 and dry["blobs"] > 0
    assert stored(server) == before
    assert gc(server, "--dry-run")["deleted_blobs"] == dry["deleted_blobs"]  # it changed nothing
    real = gc(server)
    for key in ("repositories", "deleted_blobs", "manifests", "blobs", "bytes_freed"):
        assert real[key] == dry[key], key
    assert stored(server) == before - set(real["deleted_blobs"])
    assert gc(server, "--dry-run")["manifests"] == 0
    pullable(client, "dry/b", "v1")


def test_a_collection_between_upload_and_manifest_put(server: CargoholdServer, client: httpx.Client) -> None:
    layers = [b"pushed, then collected before its manifest " * 50]
    raw = image(client, "gc/race", layers, "race")
    report = gc(server)  # the client is slower than the grace period
    assert sha256(layers[0]) in report["deleted_blobs"] and config_of(raw) in report["deleted_blobs"]
    response = put_manifest(client, "gc/race", "v1", raw, OCI_MANIFEST)
    assert response.status_code == 400 and set(codes(response)) == {"MANIFEST_BLOB_UNKNOWN"}
    assert client.get("/v2/gc/race/manifests/v1").status_code == 404
    image(client, "gc/race", layers, "race")  # the client uploads again
    tagged(client, "gc/race", "v1", raw)
    pullable(client, "gc/race", "v1")


def test_a_mount_of_a_collected_blob_starts_an_upload(server: CargoholdServer, client: httpx.Client) -> None:
    digest = push_blob(client, "gc/source", b"mounted after its collection " * 20)
    assert digest in gc(server)["deleted_blobs"]
    response = client.post("/v2/gc/target/blobs/uploads/", params={"mount": digest, "from": "gc/source"})
    assert response.status_code == 202  # not mounted: an upload to send the bytes to


def test_the_admin_api_runs_and_lists(tmp_path: Path, setup: Setup) -> None:
    from .test_immutable_tags import FAST_ENV, PASSWORDS, admin_cli, basic

    database = setup.database_url
    where = ["--data-dir", str(tmp_path / "data"), *(["--database-url", database] if database else [])]
    assert admin_cli(where, "user", "add", "root", "--superuser", "--password-stdin",
                     stdin=PASSWORDS["root"] + "\n")[0] == 0
    assert admin_cli(where, "user", "add", "alice", "--password-stdin", stdin=PASSWORDS["alice"] + "\n")[0] == 0
    env = {**FAST_ENV, **SERVER_ENV, **NO_GRACE, **setup.env}
    with cargohold(tmp_path, *WORKERS, "--auth", "token", env=env, database_url=database) as running:
        token = httpx.get(f"{running.url}/auth/token", headers=basic("root"), timeout=30, params={
            "service": "cargohold", "scope": "repository:gc/admin:pull,push"}).json()["token"]
        rule = httpx.post(f"{running.url}/admin/v1/immutable-tags", headers=basic("root"), timeout=30,
                          json={"repository": "gc/admin", "tag": "v*"})
        assert rule.status_code == 200, rule.text
        with httpx.Client(base_url=running.url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as c:
            kept = tagged(c, "gc/admin", "v1", image(c, "gc/admin", [b"an immutable image's layer"], "kept"))
            digest = push_blob(c, "gc/admin", b"collected through the admin API")
        url = f"{running.url}/admin/v1/gc"
        denied = httpx.post(url, headers=basic("alice"), json={"dry_run": True}, timeout=30)
        assert denied.status_code == 403
        # refused before its body is read: a wrong one tells a non-superuser nothing
        assert httpx.post(url, headers=basic("alice"), json={"dry_run": "yes"}, timeout=30).status_code == 403
        bad = httpx.post(url, headers=basic("root"), json={"dry_run": "yes"}, timeout=30)
        assert bad.status_code == 400
        dry = httpx.post(url, headers=basic("root"), json={"dry_run": True}, timeout=60)
        assert dry.status_code == 200 and dry.json()["deleted_blobs"] == [digest], dry.text
        real = httpx.post(url, headers=basic("root"), json={}, timeout=60).json()
        assert real["deleted_blobs"] == [digest] and not real["dry_run"]
        runs = httpx.get(url, headers=basic("root"), params={"n": "2"}, timeout=30).json()["runs"]
        assert [run["id"] for run in runs] == [real["id"], dry.json()["id"]]
        assert [run["dry_run"] for run in runs] == [False, True]
        assert real["manifests"] == 0
        with httpx.Client(base_url=running.url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as c:
            pullable(c, "gc/admin", kept)  # an immutable tag's image is tagged: never collected


@requires_skopeo
def test_skopeo_pulls_every_kept_tag(server: CargoholdServer, client: httpx.Client, tmp_path: Path) -> None:
    scenario(client, "pull")
    gc(server)
    clients = Clients(tmp_path / "clients", [server.host])
    for repo, tag in (("pull/b", "v1"),):
        clients.skopeo.copy(f"docker://{server.host}/{repo}:{tag}", f"dir:{tmp_path / 'out'}")
    server.assert_storage_consistent()


def test_the_periodic_job_collects(tmp_path: Path, setup: Setup) -> None:
    env = {**NO_GRACE, "CARGOHOLD_GC_INTERVAL": "1s", **setup.env}
    with cargohold(tmp_path, *WORKERS, env=env, database_url=setup.database_url) as running, \
            httpx.Client(base_url=running.url, timeout=30) as c:
        digest = push_blob(c, "gc/job", b"collected by the job")
        kept = tagged(c, "gc/job", "v1", image(c, "gc/job", [b"kept by its tag"], "job"))
        for _ in range(100):
            if c.head(f"/v2/gc/job/blobs/{digest}").status_code == 404:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the job did not collect the blob")
        pullable(c, "gc/job", kept)
        # the newest run may still be going (one starts every second); the one that collected has finished
        history = gc(running, "--history", env={"CARGOHOLD_GC_ENABLED": "false"})
        assert any(run["finished"] is not None for run in history)


def test_a_run_purges_abandoned_uploads(server: CargoholdServer, client: httpx.Client) -> None:
    started = client.post("/v2/gc/abandoned/blobs/uploads/")
    assert started.status_code == 202
    location = started.headers["location"]
    time.sleep(1.1)
    aged = {"CARGOHOLD_UPLOAD_MAX_AGE_SECONDS": "0"}
    assert gc(server, "--dry-run", env=aged)["uploads"] == 1
    assert client.get(location).status_code == 204
    assert gc(server, env=aged)["uploads"] == 1
    assert client.get(location).status_code == 404
    assert server.upload_files() == set()
