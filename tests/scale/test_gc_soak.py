"""Garbage collection under load, on SQLite + filesystem and on PostgreSQL + S3: a server collects continuously
(a run every fraction of a second, grace periods of one second) while three client processes push images that
share layers (some as indexes over two platforms), move and delete their tags and push again; a variant also
SIGKILLs the server at random moments and starts it again on the same data, the clients retrying.

Afterwards every tag the registry last acknowledged (201) pulls with skopeo and passes ``cargohold check``, a
deleted tag is gone, and once a final ``cargohold gc`` has run after the grace periods the store holds exactly
the blobs that the manifests reachable from a tag reference (index children included): no orphan, nothing
live missing, one blob row per stored blob, and no manifest that no tag reaches.

Some manifest PUTs come a grace period after their blobs (slow clients): the collector takes what they
reference first, the PUT answers MANIFEST_BLOB_UNKNOWN (or MANIFEST_UNKNOWN for an index's child) and the
client pushes again, as clients do.

The run is seeded: ``CARGOHOLD_GC_SOAK_SEED`` repeats its choices (the seed is printed, and named by a
failure); the interleaving is the machine's. The clients push for 8 s (12 s with kills), not counting the time
their requests met a dead server; ``CARGOHOLD_FULL_SOAK=1`` makes both 20 s.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import multiprocessing
import os
import random
import sqlite3
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest

from cargohold.cli.main import main
from tests.interop.tools import Clients, requires_skopeo
from tests.support.backends import MATRIX, Setup, setup_for
from tests.support.servers import CargoholdServer, cargohold
from tests.support.stored import S3Blobs, digest_of, query

from .conftest import kill_replica

#: how long the clients push, per test: with no kill, and with kills
FULL = os.environ.get("CARGOHOLD_FULL_SOAK") == "1"
PUSHING_SECONDS, PUSHING_SECONDS_WITH_KILLS = (20.0, 20.0) if FULL else (8.0, 12.0)
CLIENTS = 3
REPOSITORIES = ("soak/one", "soak/two")
#: tags per client and repository (each client writes tags of its own: its writes to one tag are ordered)
TAGS = 2
#: the pool of layers the clients' images share
SHARED_LAYERS = 12
#: the job's interval and the grace periods (seconds)
GC_ENV = {"CARGOHOLD_GC_INTERVAL": "0.2", "CARGOHOLD_GC_GRACE_PERIOD": "1",
          "CARGOHOLD_GC_UNTAGGED_GRACE_PERIOD": "1"}
#: the share of manifest PUTs that come about a grace period after what they reference was pushed
SLOW = 0.2
#: how many kills, and the killed server's time down (seconds)
KILLS = (2, 4)
DOWN_FOR = (0.0, 0.5)
#: an operation that keeps failing this long (server down, collected under it) is a failure
GIVE_UP_SECONDS = 45.0
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
WORKERS = ("--workers", "2")


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


def code(r: httpx.Response) -> str:
    try:
        return str(r.json()["errors"][0]["code"])
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


class Unexpected(Exception):
    """An answer no retry of a real client covers."""


class Collected(Exception):
    """The manifest PUT found a blob or child manifest gone (collected meanwhile): push them again."""


class Client:
    """One pushing process: requests that meet a dead server are retried; an acknowledged write is one
    answered 201 (a push) or 202 (a tag's deletion)."""

    def __init__(self, number: int, url: str, seed: int, shared: list[bytes]) -> None:
        self.number, self.rng, self.shared = number, random.Random(seed * 1000 + number), shared
        self.http = httpx.Client(base_url=url, timeout=60)
        self.doing, self.started = "", time.monotonic()
        #: (repository, tag) -> the digest last acknowledged, None once its deletion was acknowledged
        self.tags: dict[tuple[str, str], str | None] = {}
        self.counts = {"images": 0, "indexes": 0, "deletes": 0, "retries": 0, "collected": 0}
        #: seconds spent on requests that met a dead server, and their pauses: added to the pushing time
        self.down = 0.0

    def begin(self, doing: str) -> None:
        self.doing, self.started = doing, time.monotonic()

    def send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """The request, sent again (after a pause) while the server is unreachable or restarting."""
        while True:
            sent = time.monotonic()
            try:
                r = self.http.request(method, path, **kw)
            except httpx.TransportError:
                r = None
            if r is not None and r.status_code not in (429, 503):
                return r
            if time.monotonic() - self.started > GIVE_UP_SECONDS:
                raise Unexpected(f"{self.doing}: no answer within {GIVE_UP_SECONDS} s of retries")
            self.counts["retries"] += 1
            time.sleep(0.2)
            self.down += time.monotonic() - sent

    def blob(self, repository: str, data: bytes, *, check_first: bool) -> str:
        """A blob pushed in one POST, or skipped if a HEAD finds it (as clients do for a base layer)."""
        digest = sha256(data)
        if check_first and self.send("HEAD", f"/v2/{repository}/blobs/{digest}").status_code == 200:
            return digest
        while True:
            r = self.send("POST", f"/v2/{repository}/blobs/uploads/", params={"digest": digest}, content=data,
                          headers={"Content-Type": "application/octet-stream"})
            if r.status_code == 201:
                return digest
            if r.status_code == 404 and code(r) == "BLOB_UPLOAD_UNKNOWN":
                continue
            raise Unexpected(f"POST of {digest} to {repository}: {r.status_code} {r.text[:300]}")

    def manifest(self, repository: str, reference: str, raw: bytes, media_type: str) -> None:
        if self.rng.random() < SLOW:  # a slow client: what it pushed comes due for collection meanwhile
            time.sleep(self.rng.uniform(0.8, 1.3))
        r = self.send("PUT", f"/v2/{repository}/manifests/{reference}", content=raw,
                      headers={"Content-Type": media_type})
        if r.status_code == 201:
            if r.headers.get("docker-content-digest") != sha256(raw):
                raise Unexpected(f"PUT of {repository}:{reference}: 201 for {r.headers.get('docker-content-digest')}")
            return
        if r.status_code == 400 and code(r) in ("MANIFEST_BLOB_UNKNOWN", "MANIFEST_UNKNOWN"):
            self.counts["collected"] += 1
            raise Collected
        raise Unexpected(f"PUT of {repository}:{reference}: {r.status_code} {r.text[:300]}")

    def image(self, repository: str, platform: str, *, again: bool) -> tuple[bytes, list[bytes]]:
        """A manifest over a config of its own, maybe a shared base layer and unique layers; its blobs pushed."""
        rng = self.rng
        layers = [rng.randbytes(rng.randint(2, 60_000)) for _ in range(rng.randint(0, 1))]
        # a base layer from the pool: often unreferenced for a while, and collected as a client pushes it again
        layers.insert(0, rng.choice(self.shared))
        config = json.dumps({"architecture": platform, "os": "linux", "n": rng.random()}).encode()
        raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                          "layers": [descriptor(OCI_LAYER, layer) for layer in layers]}).encode()
        blobs = [config, *layers]
        self.push_blobs(repository, blobs, again=again)
        return raw, blobs

    def push_blobs(self, repository: str, blobs: list[bytes], *, again: bool) -> None:
        for data in blobs:
            self.blob(repository, data, check_first=not again and data in self.shared)

    def push(self, repository: str, tag: str) -> None:
        """An image or an index of two, under ``tag``; what the collector took meanwhile is pushed again."""
        index = self.rng.random() < 0.3
        self.begin(f"push of {repository}:{tag}")
        if not index:
            raw, blobs = self.image(repository, "amd64", again=False)
            for _ in range(10):
                try:
                    self.manifest(repository, tag, raw, OCI_MANIFEST)
                    break
                except Collected:
                    self.push_blobs(repository, blobs, again=True)
            else:
                raise Unexpected(f"{self.doing}: collected under the push ten times")
            self.counts["images"] += 1
        else:
            children = [self.image(repository, arch, again=False) for arch in ("amd64", "arm64")]
            raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                descriptor(OCI_MANIFEST, child, platform={"os": "linux", "architecture": arch})
                for (child, _), arch in zip(children, ("amd64", "arm64"), strict=True)]}).encode()
            for attempt in range(10):
                try:
                    for child, blobs in children:
                        try:
                            self.manifest(repository, sha256(child), child, OCI_MANIFEST)
                        except Collected:
                            self.push_blobs(repository, blobs, again=True)
                            self.manifest(repository, sha256(child), child, OCI_MANIFEST)
                    self.manifest(repository, tag, raw, OCI_INDEX)
                    break
                except Collected:
                    if attempt:
                        for _, blobs in children:
                            self.push_blobs(repository, blobs, again=True)
            else:
                raise Unexpected(f"{self.doing}: collected under the push ten times")
            self.counts["indexes"] += 1
        self.tags[(repository, tag)] = sha256(raw)

    def delete(self, repository: str, tag: str) -> None:
        self.begin(f"deletion of {repository}:{tag}")
        retries = self.counts["retries"]
        r = self.send("DELETE", f"/v2/{repository}/manifests/{tag}")
        # a 404 after a retry: the deletion a kill cut short was done
        if r.status_code != 202 and not (r.status_code == 404 and self.counts["retries"] > retries):
            raise Unexpected(f"DELETE of {repository}:{tag} (acknowledged): {r.status_code} {r.text[:300]}")
        self.tags[(repository, tag)] = None
        self.counts["deletes"] += 1

    def run(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        mine = [(repository, f"c{self.number}-{n}") for repository in REPOSITORIES for n in range(TAGS)]
        while time.monotonic() < end + self.down:  # seconds with the server up: a restart's time is the machine's
            repository, tag = self.rng.choice(mine)
            if self.tags.get((repository, tag)) and self.rng.random() < 0.3:
                self.delete(repository, tag)
            else:
                self.push(repository, tag)
        # a slow machine may fit only a few pushes in the time, and chance then none of the deletions: one at
        # least, so that every run collects what a deletion leaves
        pushed = [key for key, digest in self.tags.items() if digest]
        if not self.counts["deletes"] and pushed:
            self.delete(*self.rng.choice(pushed))


def push_loop(number: int, url: str, seed: int, shared: list[bytes], seconds: float) -> dict[str, Any]:
    """A pushing process's life: what it got acknowledged, or what went wrong."""
    client = Client(number, url, seed, shared)
    failure = None
    try:
        client.run(seconds)
    except Exception as exc:  # noqa: BLE001 - reported with the seed
        failure = f"client {number}: {type(exc).__name__}: {exc}"
    finally:
        client.http.close()
    return {"tags": [[repository, tag, digest] for (repository, tag), digest in client.tags.items()],
            "counts": client.counts, "failure": failure}


@dataclass
class Chaos:
    kills: int = 0
    failures: list[str] = field(default_factory=list)


def killer(server: CargoholdServer, rng: random.Random, chaos: Chaos, stop: threading.Event, seconds: float) -> None:
    """SIGKILL the server (its workers too) at KILLS random moments of the pushing, and start it again on the
    same data each time."""
    try:
        started = time.monotonic()
        for moment in sorted(rng.uniform(2.0, seconds - 2.0) for _ in range(rng.randint(*KILLS))):
            if stop.wait(max(0.0, started + moment - time.monotonic())):
                return
            kill_replica(server)
            chaos.kills += 1
            time.sleep(rng.uniform(*DOWN_FOR))
            server.start()
    except Exception as exc:  # noqa: BLE001 - reported with the seed
        chaos.failures.append(f"killer: {type(exc).__name__}: {exc}")


# what the store holds, read from outside the server


def rows(server: CargoholdServer, statement: str) -> list[tuple[Any, ...]]:
    if server.database_url is not None:
        return query(server.database_url, statement)
    with contextlib.closing(sqlite3.connect(server.data_dir / "metadata.db")) as db:
        return db.execute(statement).fetchall()


def orphans_state(server: CargoholdServer, digests: set[str]) -> dict[str, dict[str, Any]]:
    """What the database says of each orphan: why no collection took it."""
    now = int(time.time())

    def of(statement: str, digest: str) -> list[tuple[Any, ...]]:
        return rows(server, statement.replace("?", f"'{digest}'"))

    return {digest: {
        "blob": of("SELECT size FROM blobs WHERE digest = ?", digest),
        "links": of("SELECT repository_id FROM repository_blobs WHERE digest = ?", digest),
        "review_age": [now - int(at) for (at,) in of("SELECT queued_at FROM gc_blob_review WHERE digest = ?", digest)],
        "uploads": of("SELECT id, completed, updated_at FROM uploads WHERE digest = ?", digest),
        "referenced_by": of("SELECT repository_id, manifest_digest FROM manifest_references WHERE target_digest = ?",
                            digest),
        "deletions": of("SELECT id, storage_key, attempts FROM gc_object_deletions WHERE digest = ?", digest),
    } for digest in sorted(digests)}


def cli(server: CargoholdServer, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            mock.patch.dict(os.environ, {**server.env, "DOCKER_CONFIG": str(server.data_dir.parent / "docker"),
                                         "XDG_CACHE_HOME": str(server.data_dir.parent / "cache"), **(env or {})}):
        status = main(list(argv))
    return status, out.getvalue(), err.getvalue()


def gc(server: CargoholdServer, *args: str, env: dict[str, str] | None = None) -> Any:
    where = ["--data-dir", str(server.data_dir), *(["--database-url", server.database_url]
                                                    if server.database_url else [])]
    status, out, err = cli(server, "gc", *where, "--json", *args, env=env)
    assert status == 0, (out, err)
    return json.loads(out)


def referenced(http: httpx.Client, repository: str, reference: str, into: set[str], manifests: set[str]) -> None:
    """The blobs (into) and manifests a manifest and an index's children reference, walked as a pull does."""
    r = http.get(f"/v2/{repository}/manifests/{reference}", headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"})
    assert r.status_code == 200, f"{repository}:{reference}: {r.status_code} {r.text[:300]}"
    manifests.add(sha256(r.content))
    manifest = r.json()
    for child in manifest.get("manifests", []):
        referenced(http, repository, child["digest"], into, manifests)
    into.update(blob["digest"] for blob in [*([manifest["config"]] if "config" in manifest else []),
                                            *manifest.get("layers", [])])


def soak(setup: Setup, tmp_path: Path, *, kills: bool) -> None:
    seed = int(os.environ.get("CARGOHOLD_GC_SOAK_SEED") or random.randrange(1 << 32))
    print(f"gc soak seed: {seed} (CARGOHOLD_GC_SOAK_SEED={seed} repeats it)")
    rng = random.Random(seed)
    shared = [rng.randbytes(rng.randint(1_000, 70_000)) for _ in range(SHARED_LAYERS)]
    seconds = PUSHING_SECONDS_WITH_KILLS if kills else PUSHING_SECONDS
    with cargohold(tmp_path, *WORKERS, env={**GC_ENV, **setup.env}, database_url=setup.database_url) as server:
        chaos, stop = Chaos(), threading.Event()
        chaos_thread = threading.Thread(target=killer, args=(server, rng, chaos, stop, seconds), daemon=True)
        with ProcessPoolExecutor(CLIENTS, mp_context=multiprocessing.get_context("spawn")) as pool:
            running = [pool.submit(push_loop, n, server.url, seed, shared, seconds) for n in range(CLIENTS)]
            if kills:
                chaos_thread.start()
            results = [future.result(timeout=seconds + 2 * GIVE_UP_SECONDS) for future in running]
        stop.set()
        if kills:
            chaos_thread.join(30)
            assert not chaos_thread.is_alive()
        failures = [*chaos.failures, *(str(result["failure"]) for result in results if result["failure"])]
        assert failures == [], f"seed {seed}: {failures}"
        tags = {(repository, tag): digest for result in results for repository, tag, digest in result["tags"]}
        counts = {key: sum(result["counts"][key] for result in results) for key in results[0]["counts"]}
        print(f"seed {seed}: {chaos.kills} kills, {counts}")
        if kills:
            assert KILLS[0] <= chaos.kills <= KILLS[1], f"seed {seed}: {chaos.kills} kills"
        else:
            assert counts["retries"] == 0, f"seed {seed}: requests failed with no kill: {counts}"
        assert counts["images"] + counts["indexes"] >= 10 and counts["indexes"] and counts["deletes"], counts
        assert server.process is not None and server.process.poll() is None

        # the collector ran throughout, and deleted while the clients pushed
        history = gc(server, "--history", "--limit", "1000")
        assert sum(run["manifests"] for run in history) > 0 and sum(run["blobs"] for run in history) > 0, \
            f"seed {seed}: the collector deleted nothing in {len(history)} runs"

        live = {key: digest for key, digest in tags.items() if digest is not None}
        with httpx.Client(base_url=server.url, timeout=60) as http:
            # every acknowledged tag reads back as last acknowledged, a deleted one is gone
            for (repository, tag), digest in sorted(tags.items(), key=str):
                r = http.head(f"/v2/{repository}/manifests/{tag}",
                              headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"})
                if digest is None:
                    assert r.status_code == 404, f"seed {seed}: deleted {repository}:{tag}: {r.status_code}"
                else:
                    assert r.status_code == 200 and r.headers["docker-content-digest"] == digest, \
                        f"seed {seed}: {repository}:{tag}: {r.status_code} {r.headers.get('docker-content-digest')}"
            clients = Clients(tmp_path / "clients", [server.host])
            try:
                for (repository, tag), digest in sorted(live.items()):
                    out = tmp_path / "pulled" / repository / tag
                    out.parent.mkdir(parents=True, exist_ok=True)
                    clients.skopeo.copy(f"docker://{server.host}/{repository}:{tag}", f"dir:{out}", "--all")
                    assert sha256((out / "manifest.json").read_bytes()) == digest, f"seed {seed}: {repository}:{tag}"
                    status, output, err = cli(server, "check", f"{server.host}/{repository}:{tag}", "--json")
                    assert status == 0 and json.loads(output)["ok"] is True, f"seed {seed}: check {tag}: {output}{err}"
            finally:
                clients.close()

            # the final collection, after the grace periods: until a run finds nothing more to delete and
            # nothing is left to review. The server's own collection runs meanwhile: what it deleted last
            # queues what that referenced, due a grace period later (a run that finds nothing due is not the
            # end). A commit a kill cut short leaves its upload unfinished, and a blob with a commit in flight
            # is kept until the upload is purged as abandoned (upload_max_age_seconds, a day by default): here
            # at once.
            purge = {"CARGOHOLD_UPLOAD_MAX_AGE_SECONDS": "1"} if kills else {}
            for _ in range(10):
                time.sleep(1.2)
                final = gc(server, env={**GC_ENV, **purge})
                queued = rows(server, "SELECT (SELECT COUNT(*) FROM gc_manifest_review)"
                                      " + (SELECT COUNT(*) FROM gc_blob_review)")[0][0]
                if final["manifests"] == 0 and final["blobs"] == 0 and final["uploads"] == 0 and queued == 0:
                    break
            else:
                raise AssertionError(f"seed {seed}: collections still deleting: {final}, {queued} reviews queued")
            kept: set[str] = set()
            reachable: set[str] = set()
            for repository in REPOSITORIES:
                listed = http.get(f"/v2/{repository}/tags/list").json().get("tags") or []
                assert sorted(listed) == sorted(tag for (name, tag) in live if name == repository), \
                    f"seed {seed}: {repository} lists {listed}"
                for tag in listed:
                    referenced(http, repository, tag, kept, reachable)
        if kills and setup.on_s3:
            # what a kill left in the bucket with no row goes with the sweep (the scrub's part, not the collector's)
            server.stop()
            server.env.update({"CARGOHOLD_STORAGE_S3_ORPHAN_GRACE_SECONDS": "1",
                               "CARGOHOLD_UPLOAD_MAX_AGE_SECONDS": "1"})
            server.start()
            deadline = time.monotonic() + 30
            while server.stored().strays() and time.monotonic() < deadline:
                time.sleep(1)

        stored = server.stored()
        in_store = set(stored.blobs())
        orphans = in_store - kept
        assert orphans == set(), f"seed {seed}: orphans no live manifest references: {orphans_state(server, orphans)}"
        assert kept - in_store == set(), f"seed {seed}: live blobs missing from the store: {kept - in_store}"
        assert {str(row[0]) for row in rows(server, "SELECT digest FROM blobs")} == in_store, f"seed {seed}"
        for digest, where in stored.blobs().items():
            assert digest_of(stored, where, "sha256") == digest, f"seed {seed}: {where} does not hold {digest}"
        if isinstance(stored, S3Blobs):
            assert stored.strays() == [], f"seed {seed}: objects no row names"
        manifests = {str(row[0]) for row in rows(server, "SELECT digest FROM manifests")}
        assert manifests == reachable, f"seed {seed}: manifests no tag reaches: {manifests - reachable}"


@pytest.fixture(params=MATRIX)
def setup(request: pytest.FixtureRequest) -> Setup:
    return setup_for(str(request.param), request)


@requires_skopeo
def test_collection_under_pushes_keeps_every_acknowledged_tag(setup: Setup, tmp_path: Path) -> None:
    soak(setup, tmp_path, kills=False)


@requires_skopeo
def test_collection_under_pushes_and_server_kills(setup: Setup, tmp_path: Path) -> None:
    soak(setup, tmp_path, kills=True)
