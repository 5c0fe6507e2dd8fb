"""Usage figures and namespace quotas on a token-auth server on each setup (SQLite + filesystem, PostgreSQL + S3).

The usage figures of a corpus of images that share layers within and across repositories and namespaces
(an index, a manifest pushed to two namespaces, an unfinished push, a deleted manifest, a deleted tag) equal
a brute-force computation over what the test pushed. A quota counts what a namespace's manifests reference:
an image pushed again costs nothing, a push sharing layers pays only for its new bytes, uploads no manifest
references never count, a push over the limit is DENIED naming the quota and changes nothing, deleting a
manifest frees what only it referenced, clearing the quota lifts it."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import httpx
import pytest

from cargohold.access_model import namespace_of
from cargohold.cli.main import main
from tests.support.backends import setup_for
from tests.support.servers import CargoholdServer, cargohold

from .conftest import WORKERS
from .helpers import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, codes, descriptor, push_blob, sha256

FAST_ENV = {"CARGOHOLD_PASSWORD_COST": "4"}
PASSWORDS = {"root": "root-password-1", "alice": "alice-password-1"}


def cli(server_args: list[str], *args: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), mock.patch.dict(os.environ, FAST_ENV), \
            mock.patch("sys.stdin", io.StringIO(stdin)):
        code = main([*args[:1], *server_args, *args[1:]])
    return code, out.getvalue(), err.getvalue()


def basic(name: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{PASSWORDS[name]}".encode()).decode()}


def where(server: CargoholdServer) -> list[str]:
    return ["--data-dir", str(server.data_dir), *(["--database-url", server.database_url]
                                                  if server.database_url else [])]


@pytest.fixture(scope="module")
def server(backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[CargoholdServer]:
    tmp = tmp_path_factory.mktemp(f"usage-{backend}")
    place = setup_for(backend, request)
    database = place.database_url
    location = ["--data-dir", str(tmp / "data"), *(["--database-url", database] if database else [])]
    for name in PASSWORDS:
        flags = ["--superuser"] if name == "root" else []
        assert cli(location, "admin", "user", "add", name, *flags, "--password-stdin",
                   stdin=PASSWORDS[name] + "\n")[0] == 0
    env = {**FAST_ENV, **place.env, "CARGOHOLD_SERVER_PULL_TIMES_FLUSH_SECONDS": "0.2"}
    with cargohold(tmp, *WORKERS, "--auth", "token", env=env, database_url=database) as running:
        yield running


def client(server: CargoholdServer, *repositories: str) -> httpx.Client:
    scopes = [("scope", f"repository:{repository}:pull,push,delete") for repository in repositories]
    token = httpx.get(f"{server.url}/auth/token", headers=basic("root"), timeout=30,
                      params=[("service", "cargohold"), *scopes]).json()["token"]
    return httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {token}"})


def admin(server: CargoholdServer, method: str, path: str, who: str = "root",
          params: dict[str, str] | None = None, **body: Any) -> httpx.Response:
    return httpx.request(method, f"{server.url}/admin/v1{path}", headers=basic(who), timeout=30, params=params,
                         json=body if body else None)


def config_of(seed: str) -> bytes:
    return json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()


@dataclass
class Corpus:
    """What the test pushed, to compute the figures by brute force."""

    sizes: dict[str, int] = field(default_factory=dict)
    #: repository -> blobs uploaded to it
    linked: dict[str, set[str]] = field(default_factory=dict)
    #: repository -> manifest digest -> (its bytes, the blobs it references)
    manifests: dict[str, dict[str, tuple[int, frozenset[str]]]] = field(default_factory=dict)
    #: repository -> tag -> manifest digest
    tags: dict[str, dict[str, str]] = field(default_factory=dict)

    def blob(self, c: httpx.Client, repo: str, data: bytes) -> str:
        digest = push_blob(c, repo, data)
        self.sizes[digest] = len(data)
        self.linked.setdefault(repo, set()).add(digest)
        return digest

    def image(self, c: httpx.Client, repo: str, tag: str, layers: list[bytes], seed: str) -> tuple[str, bytes]:
        config = config_of(seed)
        blobs = {self.blob(c, repo, data) for data in [config, *layers]}
        raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                          "layers": [descriptor(OCI_LAYER, data) for data in layers]}).encode()
        self.put(c, repo, tag, raw, OCI_MANIFEST, frozenset(blobs))
        return sha256(raw), raw

    def put(self, c: httpx.Client, repo: str, tag: str, raw: bytes, media_type: str, blobs: frozenset[str]) -> None:
        response = c.put(f"/v2/{repo}/manifests/{tag}", content=raw, headers={"Content-Type": media_type})
        assert response.status_code == 201, response.text
        self.manifests.setdefault(repo, {})[sha256(raw)] = (len(raw), blobs)
        self.tags.setdefault(repo, {})[tag] = sha256(raw)

    def delete_manifest(self, c: httpx.Client, repo: str, digest: str) -> None:
        assert c.delete(f"/v2/{repo}/manifests/{digest}").status_code == 202
        del self.manifests[repo][digest]
        self.tags[repo] = {t: d for t, d in self.tags[repo].items() if d != digest}

    def delete_tag(self, c: httpx.Client, repo: str, tag: str) -> None:
        assert c.delete(f"/v2/{repo}/manifests/{tag}").status_code == 202
        del self.tags[repo][tag]

    # brute force

    def referenced(self, repos: list[str]) -> set[str]:
        return {blob for repo in repos for _, blobs in self.manifests.get(repo, {}).values() for blob in blobs}

    def figures(self, mine: list[str], others: list[str]) -> dict[str, int]:
        held = self.referenced(mine)
        elsewhere = self.referenced(others)
        manifest_bytes = sum(size for repo in mine for size, _ in self.manifests.get(repo, {}).values())
        total = sum(self.sizes[d] for d in held) + manifest_bytes
        exclusive = sum(self.sizes[d] for d in held - elsewhere) + manifest_bytes
        linked = {d for repo in mine for d in self.linked.get(repo, set())}
        return {
            "total_bytes": total, "exclusive_bytes": exclusive, "shared_bytes": total - exclusive,
            "manifest_bytes": manifest_bytes, "unreferenced_bytes": sum(self.sizes[d] for d in linked - held),
            "manifests": sum(len(self.manifests.get(repo, {})) for repo in mine),
            "tags": sum(len(self.tags.get(repo, {})) for repo in mine),
        }

    def namespace_used(self, namespace: str) -> int:
        return self.figures([r for r in self.linked if namespace_of(r) == namespace], [])["total_bytes"]


def _layer(rng: random.Random, name: str) -> bytes:
    return (name.encode() + b"\0") + rng.randbytes(rng.randrange(1000, 40_000))


FIGURES = ("total_bytes", "exclusive_bytes", "shared_bytes", "manifest_bytes", "unreferenced_bytes", "manifests",
           "tags")


def test_the_server_refreshes_the_figures_by_itself(server: CargoholdServer) -> None:
    """The job runs once the server starts (then every 15 minutes): figures are there before anyone asks."""
    deadline = time.monotonic() + 20
    while (report := admin(server, "GET", "/usage").json())["computed_at"] is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert report["computed_at"] is not None and report["age_seconds"] < 60


def test_usage_equals_a_brute_force_computation(server: CargoholdServer) -> None:
    rng = random.Random(13)
    layers = {name: _layer(rng, name) for name in (
        "base", "runtime", "alpha-lib", "beta-lib", "web-1", "web-2", "api-1", "db-1", "solo-1", "nested-1", "gone")}
    repos = ["alpha/web", "alpha/api", "alpha/deep/nested", "beta/web", "beta/db", "solo"]
    corpus = Corpus()
    started = int(time.time())
    with client(server, *repos) as c:
        L = layers  # noqa: N806
        web, _ = corpus.image(c, "alpha/web", "1", [L["base"], L["runtime"], L["alpha-lib"], L["web-1"]], "aw1")
        web2, _ = corpus.image(c, "alpha/web", "2", [L["base"], L["runtime"], L["alpha-lib"], L["web-2"]], "aw2")
        corpus.image(c, "alpha/api", "1", [L["base"], L["alpha-lib"], L["api-1"]], "aa1")
        gone, _ = corpus.image(c, "alpha/api", "old", [L["base"], L["gone"]], "gone")
        corpus.image(c, "alpha/deep/nested", "1", [L["base"], L["nested-1"]], "nested")
        corpus.image(c, "beta/web", "1", [L["base"], L["runtime"], L["beta-lib"], L["web-1"]], "bw1")
        corpus.image(c, "beta/db", "1", [L["base"], L["beta-lib"], L["db-1"]], "bd1")
        corpus.image(c, "solo", "1", [L["base"], L["solo-1"], L["db-1"]], "solo")
        # the same manifest in two namespaces: its layers are shared, its bytes stored twice
        for repo in ("alpha/api", "beta/db"):
            corpus.image(c, repo, "same", [L["runtime"], L["alpha-lib"]], "same")
        # an index of the two web images, under a tag of its own
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": digest, "size": corpus.manifests["alpha/web"][digest][0]}
            for digest in (web, web2)]}).encode()
        corpus.put(c, "alpha/web", "multi", index, OCI_INDEX, frozenset())
        # an unfinished push: blobs uploaded, no manifest references them
        corpus.blob(c, "beta/db", _layer(rng, "unfinished"))
        corpus.blob(c, "beta/db", L["api-1"])  # held by alpha, only linked here
        # a deleted manifest (its own layer stays linked, referenced by none) and a deleted tag
        corpus.delete_manifest(c, "alpha/api", gone)
        corpus.delete_tag(c, "alpha/web", "2")

        # a pull (GET; the workers write pull times every 0.2 s here) makes its repository's last pull time
        pulled_repo = sorted(corpus.tags)[0]
        pulled_at = time.time()
        assert c.get(f"/v2/{pulled_repo}/manifests/{sorted(corpus.tags[pulled_repo])[0]}",
                     headers={"Accept": OCI_MANIFEST}).status_code == 200
    time.sleep(1)

    refreshed = admin(server, "POST", "/usage")
    assert refreshed.status_code == 200, refreshed.text
    report = refreshed.json()
    assert started <= report["computed_at"] <= time.time() and report["age_seconds"] <= 5

    by_repository = {entry["repository"]: entry for entry in report["repositories"]}
    for repo in repos:
        expected = corpus.figures([repo], [r for r in repos if r != repo])
        assert {k: by_repository[repo][k] for k in FIGURES} == expected, repo
        assert by_repository[repo]["namespace"] == namespace_of(repo)
        assert started <= by_repository[repo]["last_push_at"] <= time.time()
        if repo == pulled_repo:
            assert int(pulled_at) <= by_repository[repo]["last_pull_at"] <= time.time()
        else:
            assert by_repository[repo]["last_pull_at"] is None
    by_namespace = {entry["namespace"]: entry for entry in report["namespaces"]}
    assert set(by_namespace) >= {"alpha", "beta"} and "solo" not in by_namespace
    for namespace in ("alpha", "beta"):
        mine = [r for r in repos if namespace_of(r) == namespace]
        expected = corpus.figures(mine, [r for r in repos if r not in mine])
        assert {k: by_namespace[namespace][k] for k in FIGURES} == expected, namespace
        assert by_namespace[namespace]["repositories"] == len(mine)
    # the corpus shares layers every way: each kind of figure is exercised
    assert by_namespace["alpha"]["exclusive_bytes"] > by_namespace["alpha"]["manifest_bytes"]
    assert by_namespace["alpha"]["shared_bytes"] > 0 and by_repository["beta/db"]["unreferenced_bytes"] > 0
    assert by_repository["alpha/api"]["unreferenced_bytes"] == len(layers["gone"]) + len(config_of("gone"))

    # one namespace, one repository; the command line reads the same figures from the database
    alpha = admin(server, "GET", "/usage", params={"name": "alpha"}).json()
    assert [n["namespace"] for n in alpha["namespaces"]] == ["alpha"]
    assert sorted(r["repository"] for r in alpha["repositories"]) == sorted(r for r in repos if r.startswith("alpha/"))
    code, out, _ = cli(where(server), "usage", "beta/db", "--json")
    assert code == 0
    document = json.loads(out)
    assert document["namespaces"] == [] and document["repositories"] == [by_repository["beta/db"]]
    code, out, _ = cli(where(server), "usage", "alpha")
    assert code == 0 and "figures computed at" in out and "alpha/deep/nested" in out and "beta/db" not in out
    code, _, err = cli(where(server), "usage", "nowhere/at-all")
    assert code == 1 and "no namespace or repository nowhere/at-all" in err


def test_usage_routes_are_for_superusers_and_namespace_owners(server: CargoholdServer) -> None:
    assert admin(server, "POST", "/usage").status_code == 200
    assert admin(server, "GET", "/usage", "alice").status_code == 403
    assert admin(server, "POST", "/usage", "alice").status_code == 403
    assert admin(server, "GET", "/usage", "alice", params={"name": "beta"}).status_code == 403
    mine = admin(server, "GET", "/usage", "alice", params={"name": "alice"})
    assert mine.status_code == 200 and mine.json()["computed_at"] is not None
    assert admin(server, "GET", "/usage", "alice", params={"name": "alice/app"}).status_code == 200


def quota_of(server: CargoholdServer, namespace: str) -> dict[str, Any] | None:
    return next((q for q in admin(server, "GET", "/quotas").json() if q["namespace"] == namespace), None)


def used(server: CargoholdServer, namespace: str) -> int:
    quota = quota_of(server, namespace)
    assert quota is not None
    return int(quota["used_bytes"])


def test_a_quota_counts_what_the_namespace_references(server: CargoholdServer) -> None:
    rng = random.Random(17)
    layers = {name: _layer(rng, name) for name in ("base", "a", "b")}
    layers["big"] = rng.randbytes(200_000)
    corpus = Corpus()
    with client(server, "quota/one", "quota/two", "quota/three") as c:
        # usage before the quota is counted when it is set
        corpus.image(c, "quota/one", "base", [layers["base"]], "base")
        start = corpus.namespace_used("quota")
        limit = start + 3 * 40_000 + 5_000
        response = admin(server, "PUT", "/quotas/quota", limit=limit)
        assert response.status_code == 200, response.text
        assert response.json() | {"updated_at": 0} == {
            "namespace": "quota", "limit_bytes": limit, "used_bytes": start, "created_by": "root", "updated_at": 0}

        # an image sharing the base layer pays for its new bytes only, in another repository too
        first, first_raw = corpus.image(c, "quota/two", "a", [layers["base"], layers["a"]], "a")
        assert used(server, "quota") == corpus.namespace_used("quota")
        assert corpus.namespace_used("quota") - start == len(first_raw) + len(layers["a"]) + len(config_of("a"))
        # the same image again, and under another tag: nothing more
        before = corpus.namespace_used("quota")
        corpus.put(c, "quota/two", "a", first_raw, OCI_MANIFEST, corpus.manifests["quota/two"][first][1])
        corpus.put(c, "quota/two", "again", first_raw, OCI_MANIFEST, corpus.manifests["quota/two"][first][1])
        assert used(server, "quota") == before == corpus.namespace_used("quota")

        # uploads no manifest references never count: blobs of a failed push
        big = corpus.blob(c, "quota/three", layers["big"])
        assert used(server, "quota") == before
        # a push over the limit is DENIED, names the quota, and changes nothing
        config = config_of("big")
        config_digest = corpus.blob(c, "quota/three", config)
        raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                          "layers": [descriptor(OCI_LAYER, layers["big"])]}).encode()
        refused = c.put("/v2/quota/three/manifests/big", content=raw, headers={"Content-Type": OCI_MANIFEST})
        assert refused.status_code == 403 and codes(refused) == ["DENIED"], refused.text
        error = refused.json()["errors"][0]
        needed = len(raw) + len(layers["big"]) + len(config)
        assert error["detail"] == {"namespace": "quota", "limit": limit, "used": before, "needed": needed}
        assert "quota of namespace quota" in error["message"] and f"limit {limit} bytes" in error["message"]
        assert f"used {before} bytes" in error["message"] and f"needed {needed} bytes" in error["message"]
        assert c.head("/v2/quota/three/manifests/big").status_code == 404
        assert used(server, "quota") == before
        # a push that fits still does: the refused one left nothing behind
        corpus.image(c, "quota/three", "b", [layers["base"], layers["b"]], "b")
        assert used(server, "quota") == corpus.namespace_used("quota")

        # deleting a manifest frees what only it referenced (the base layer stays: others reference it)
        corpus.delete_manifest(c, "quota/two", first)
        assert used(server, "quota") == corpus.namespace_used("quota")
        # the refresh computes the same figure
        assert admin(server, "POST", "/usage").status_code == 200
        assert used(server, "quota") == corpus.namespace_used("quota")
        namespace = admin(server, "GET", "/usage", params={"name": "quota"}).json()["namespaces"][0]
        assert namespace["total_bytes"] == corpus.namespace_used("quota")

        # clearing the quota lifts it; a repository of one component is in no namespace and no quota
        assert admin(server, "DELETE", "/quotas/quota").status_code == 204
        assert quota_of(server, "quota") is None
        corpus.put(c, "quota/three", "big", raw, OCI_MANIFEST, frozenset({big, config_digest}))
    changes = [(e["detail"]["change"], e["repository"]) for e in admin(
        server, "GET", "/audit", params={"action": "admin"}).json()["entries"]
        if e["detail"].get("namespace") == "quota"]
    assert changes[:2] == [("quota.clear", "quota/*"), ("quota.set", "quota/*")]


BAD_QUOTAS: list[tuple[str, str, dict[str, Any], int, str, str]] = [
    ("PUT", "/quotas/quota2", {"limit": "lots"}, 400, "QUOTA_INVALID", "invalid size 'lots'"),
    ("PUT", "/quotas/quota2", {"limit": 0}, 400, "QUOTA_INVALID", "between 1 and"),
    ("PUT", "/quotas/quota2", {"limit": True}, 400, "QUOTA_INVALID", "number of bytes or a size"),
    ("PUT", "/quotas/quota2", {"limit": 2**63}, 400, "QUOTA_INVALID", "between 1 and"),
    ("PUT", "/quotas/quota2", {"other": 1}, 400, "QUOTA_INVALID", "limit is required"),
    ("PUT", "/quotas/Quota", {"limit": 1}, 400, "QUOTA_INVALID", "is not a namespace"),
    ("DELETE", "/quotas/nothing-here", {}, 404, "QUOTA_UNKNOWN", "namespace nothing-here has no quota"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code", "message"), BAD_QUOTAS)
def test_bad_quotas_are_refused(server: CargoholdServer, method: str, path: str, body: dict[str, Any], status: int,
                                code: str, message: str) -> None:
    response = admin(server, method, path, **body)
    assert (response.status_code, codes(response)) == (status, [code]), response.text
    assert message in response.json()["errors"][0]["message"]


def test_quotas_are_set_by_superusers_and_read_by_owners(server: CargoholdServer) -> None:
    assert admin(server, "PUT", "/quotas/alice", "alice", limit="1GiB").status_code == 403
    assert admin(server, "PUT", "/quotas/alice", limit="1GiB").json()["limit_bytes"] == 1 << 30
    assert admin(server, "PUT", "/quotas/elsewhere", limit="2G").status_code == 200
    assert [q["namespace"] for q in admin(server, "GET", "/quotas", "alice").json()] == ["alice"]
    assert admin(server, "DELETE", "/quotas/alice", "alice").status_code == 403
    for namespace in ("alice", "elsewhere"):
        assert admin(server, "DELETE", f"/quotas/{namespace}").status_code == 204


def test_admin_quota_commands(server: CargoholdServer) -> None:
    code, out, err = cli(where(server), "admin", "quota", "set", "cli-ns", "50GiB")
    assert code == 0, err
    assert out.strip() == "quota of namespace cli-ns (50.0 GiB) set: 0 B used now"
    code, out, _ = cli(where(server), "admin", "quota", "list", "--json")
    assert {"namespace": "cli-ns", "limit_bytes": 50 << 30, "used_bytes": 0} .items() <= next(
        q for q in json.loads(out) if q["namespace"] == "cli-ns").items()
    code, out, _ = cli(where(server), "admin", "quota", "list")
    assert code == 0 and any(line.split()[:3] == ["cli-ns", "50.0", "GiB"] for line in out.splitlines())
    code, _, err = cli(where(server), "admin", "quota", "set", "cli-ns", "fifty")
    assert code == 1 and "invalid size 'fifty'" in err
    code, out, _ = cli(where(server), "admin", "quota", "clear", "cli-ns")
    assert (code, out.strip()) == (0, "quota of namespace cli-ns (50.0 GiB) cleared")
    code, _, err = cli(where(server), "admin", "quota", "clear", "cli-ns")
    assert code == 1 and "namespace cli-ns has no quota" in err


def test_concurrent_pushes_never_pass_a_quota_together(server: CargoholdServer) -> None:
    """Eight images put at once (blobs uploaded beforehand) into room for three: exactly three get in."""
    rng = random.Random(19)
    for attempt in range(3):
        namespace = f"race{attempt}"
        repos = [f"{namespace}/app{i}" for i in range(8)]
        corpus = Corpus()
        with client(server, *repos) as c:
            raws = []
            for i, repo in enumerate(repos):
                layer = rng.randbytes(10_000)
                config = config_of(f"{namespace} {i}")
                corpus.blob(c, repo, layer)
                corpus.blob(c, repo, config)
                raws.append(json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                        "config": descriptor(OCI_CONFIG, config),
                                        "layers": [descriptor(OCI_LAYER, layer)]}).encode())
            largest = sorted(10_000 + len(config_of(f"{namespace} {i}")) + len(raw) for i, raw in enumerate(raws))
            assert admin(server, "PUT", f"/quotas/{namespace}", limit=sum(largest[-3:]) + 100).status_code == 200

            def push(index: int, repos: list[str] = repos, raws: list[bytes] = raws) -> int:
                return c.put(f"/v2/{repos[index]}/manifests/latest", content=raws[index],
                             headers={"Content-Type": OCI_MANIFEST}).status_code

            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(push, range(8)))
        assert sorted(statuses) == [201] * 3 + [403] * 5, statuses
        winners = [i for i, status in enumerate(statuses) if status == 201]
        assert used(server, namespace) == sum(
            len(raws[i]) + 10_000 + len(config_of(f"{namespace} {i}")) for i in winners)


def test_a_collection_frees_the_quota_its_manifests_used(server: CargoholdServer) -> None:
    """A tag deletion frees nothing; the collection that then deletes the untagged manifest frees its bytes."""
    rng = random.Random(23)
    corpus = Corpus()
    kept_layers, gone_layers = [_layer(rng, "kept")], [_layer(rng, "kept"), _layer(rng, "gone")]
    with client(server, "gcquota/app") as c:
        assert admin(server, "PUT", "/quotas/gcquota", limit=10 << 20).status_code == 200
        corpus.image(c, "gcquota/app", "kept", kept_layers, "kept")
        corpus.image(c, "gcquota/app", "gone", gone_layers, "gone")
        assert used(server, "gcquota") == corpus.namespace_used("gcquota")
        with_both = used(server, "gcquota")
        corpus.delete_tag(c, "gcquota/app", "gone")
        assert used(server, "gcquota") == with_both  # the manifest is still stored
    out, err = io.StringIO(), io.StringIO()
    env = {**server.env, "CARGOHOLD_GC_GRACE_PERIOD": "0", "CARGOHOLD_GC_UNTAGGED_GRACE_PERIOD": "0"}
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), mock.patch.dict(os.environ, env):
        assert main(["gc", *where(server), "--json", "--repository", "gcquota/*"]) == 0, err.getvalue()
    assert json.loads(out.getvalue())["manifests"] == 1
    gone = next(d for d in corpus.manifests["gcquota/app"] if d not in corpus.tags["gcquota/app"].values())
    del corpus.manifests["gcquota/app"][gone]
    assert used(server, "gcquota") == corpus.namespace_used("gcquota") < with_both
