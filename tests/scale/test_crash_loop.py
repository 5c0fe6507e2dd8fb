"""Crash safety on S3: while clients push images through two replicas (one PostgreSQL database, one bucket
prefix), a killer SIGKILLs a random replica at random moments and starts it again. The clients retry as
real ones do; what the registry acknowledged (201) must read back from every replica (a blob's HEAD with
its size and digest, its GET with bytes of that size that hash to it; a manifest byte for byte, by digest and
by the last tag acknowledged for it), every blob row must name an object holding its digest's bytes, and
once the upload purge and the sweep have run nothing may be left in the bucket that no row names.

The run is seeded: ``CARGOHOLD_CRASH_SEED`` repeats one (the seed is printed, and named by a failure).
The clients push for 8 s and then until the killer has killed 3 times; ``CARGOHOLD_FULL_SOAK=1``: for 35 s and
until 5 kills.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.postgres import PostgresCluster, query
from tests.support.seaweedfs import start_seaweedfs
from tests.support.stored import S3Blobs, digest_of

from .conftest import Deployment, MiB, deployment, kill_replica
from .test_uploads_across_replicas import path_of

#: S3's smallest part, so that blobs of a few parts stay small
PART = 5 * MiB
FULL = os.environ.get("CARGOHOLD_FULL_SOAK") == "1"
#: how long the clients push at least while replicas are killed, and until how many kills (a restart's time
#: is the machine's: a count of seconds alone may see one kill on a busy one)
PUSHING_SECONDS, FEWEST_KILLS = (35.0, 5) if FULL else (8.0, 3)
CLIENTS = 3
#: seconds between two kills, and a dead replica's time before its restart
KILL_EVERY = (1.5, 4.0)
DOWN_FOR = (0.0, 1.0)
#: a client gives up on a blob or manifest that keeps failing this long (a dead replica's upload lock
#: lapses in LOCK_SECONDS)
GIVE_UP_SECONDS = 60.0
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
TAGS = ("latest", "stable", "edge")


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def blob_size(rng: random.Random) -> int:
    """Below, at and above the part size; tiny and several parts."""
    kind = rng.randrange(10)
    if kind < 3:
        return rng.randint(2, 4096)
    if kind < 6:
        return rng.randint(100_000, MiB)
    if kind < 8:
        return PART + rng.randint(-2, 2)
    return rng.randint(PART + 3, 2 * PART + PART // 2)


@dataclass
class Ledger:
    """What the registry acknowledged, and what it answered that no client expects."""

    #: digest -> (size, the repositories it was acknowledged in)
    blobs: dict[str, tuple[int, set[str]]] = field(default_factory=dict)
    #: (repository, manifest digest) -> bytes
    manifests: dict[tuple[str, str], bytes] = field(default_factory=dict)
    #: (repository, tag) -> the bytes of the last manifest acknowledged under it
    tags: dict[tuple[str, str], bytes] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    kills: int = 0
    retries: int = 0
    #: answers 429 or 503 (the bucket throttles or fails)
    busy: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def blob(self, repository: str, digest: str, size: int) -> None:
        with self.lock:
            self.blobs.setdefault(digest, (size, set()))[1].add(repository)

    def fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)


class Unexpected(Exception):
    """An answer that no retry of a real client covers."""


class Restart(Exception):
    """The upload is gone (BLOB_UPLOAD_UNKNOWN): start it again."""


def code(r: httpx.Response) -> str:
    try:
        return str(r.json()["errors"][0]["code"])
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


class Pusher:
    """One client: each request goes to a replica picked at random (a balancer without sticky sessions);
    a request that finds its replica dead or restarting is retried as a real client retries it."""

    def __init__(self, number: int, urls: list[str], seed: int, shared: list[bytes], ledger: Ledger,
                 stop: threading.Event) -> None:
        self.rng = random.Random(seed * 1000 + number)
        self.repository = f"crash/loop-{number}"
        self.clients = [httpx.Client(base_url=url, timeout=120) for url in urls]
        self.shared, self.ledger, self.stop = shared, ledger, stop
        self.doing, self.started = "", time.monotonic()

    def send(self, method: str, path: str, **kw: object) -> httpx.Response:
        """One request; a dead replica (refused, reset) raises httpx.TransportError, as does a throttled store
        (429, 503) answered after a pause."""
        r = self.rng.choice(self.clients).request(method, path, **kw)  # type: ignore[arg-type]
        if r.status_code in (429, 503):
            with self.ledger.lock:
                self.ledger.busy += 1
            time.sleep(0.5)
            raise httpx.TransportError(f"{method} {path}: {r.status_code}")
        return r

    def pause(self, seconds: float = 0.2) -> None:
        """Before a retry; gives up on an operation that keeps failing."""
        if time.monotonic() - self.started > GIVE_UP_SECONDS:
            raise Unexpected(f"{self.doing}: no success within {GIVE_UP_SECONDS} s of retries")
        with self.ledger.lock:
            self.ledger.retries += 1
        time.sleep(seconds)

    def begin(self, doing: str) -> None:
        self.doing, self.started = doing, time.monotonic()

    # blobs

    def push_blob(self, data: bytes) -> str:
        digest = sha256(data)
        self.begin(f"blob {digest} ({len(data)} bytes)")
        while True:
            try:
                if len(data) < 2 or self.rng.random() < 0.4:
                    self.monolithic(data, digest)
                else:
                    self.chunked(data, digest)
            except Restart:
                self.pause()
                continue
            self.ledger.blob(self.repository, digest, len(data))
            return digest

    def uploads(self) -> str:
        return f"/v2/{self.repository}/blobs/uploads/"

    def monolithic(self, data: bytes, digest: str) -> None:
        """POST with the digest and the body (one request), or POST then PUT with the body."""
        while True:
            try:
                if self.rng.random() < 0.5:
                    r = self.send("POST", self.uploads(), params={"digest": digest}, content=data,
                                  headers={"Content-Type": "application/octet-stream"})
                    if r.status_code == 201:
                        return
                    raise Unexpected(f"POST of {digest} with its body: {r.status_code} {r.text[:300]}")
                r = self.send("POST", self.uploads())
                if r.status_code != 202:
                    raise Unexpected(f"POST of an upload: {r.status_code} {r.text[:300]}")
                self.finish(path_of(r.headers["location"]), digest, data)
                return
            except httpx.TransportError:
                self.pause()

    def chunked(self, data: bytes, digest: str) -> None:
        chunk = self.rng.choice([MiB + 7, 2 * MiB + 3, PART, PART + 1, 3 * PART])
        while True:
            try:
                r = self.send("POST", self.uploads())
                break
            except httpx.TransportError:
                self.pause()
        if r.status_code != 202:
            raise Unexpected(f"POST of an upload: {r.status_code} {r.text[:300]}")
        location = path_of(r.headers["location"])
        offset = 0
        while offset < len(data):
            piece = data[offset:offset + chunk]
            try:
                r = self.send("PATCH", location, content=piece, headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(piece) - 1}"})
            except httpx.TransportError:
                self.pause()
                offset, location = self.resume(location)
                continue
            if r.status_code == 202:
                have = int(r.headers["range"].rpartition("-")[2]) + 1
                if have != offset + len(piece):
                    raise Unexpected(f"PATCH of {location} at {offset}: Range {r.headers['range']}")
                offset, location = have, path_of(r.headers["location"])
            elif r.status_code == 404 and code(r) == "BLOB_UPLOAD_UNKNOWN":
                raise Restart
            elif (r.status_code == 400 and code(r) == "BLOB_UPLOAD_INVALID") or r.status_code == 416:
                self.pause(0.5)  # busy: a dead replica's lock on it has not lapsed yet
                offset, location = self.resume(location)
            else:
                raise Unexpected(f"PATCH of {location} at {offset}: {r.status_code} {r.text[:300]}")
        self.finish(location, digest, b"")

    def resume(self, location: str) -> tuple[int, str]:
        """How far the upload got, asked of any replica (chunks are at least 2 bytes: "0-0" is nothing)."""
        while True:
            try:
                r = self.send("GET", location)
            except httpx.TransportError:
                self.pause()
                continue
            if r.status_code == 404 and code(r) == "BLOB_UPLOAD_UNKNOWN":
                raise Restart
            if r.status_code != 204:
                raise Unexpected(f"GET of {location}: {r.status_code} {r.text[:300]}")
            last = int(r.headers["range"].rpartition("-")[2])
            return (last + 1 if last else 0), path_of(r.headers.get("location", location))

    def finish(self, location: str, digest: str, body: bytes) -> None:
        """The final PUT, resent until answered: a commit cut short is completed by the retry."""
        while True:
            try:
                r = self.send("PUT", location, params={"digest": digest}, content=body,
                              headers={"Content-Type": "application/octet-stream"})
            except httpx.TransportError:
                self.pause()
                continue
            if r.status_code == 201:
                if r.headers.get("docker-content-digest") != digest:
                    raise Unexpected(f"PUT of {location}: 201 for {r.headers.get('docker-content-digest')}")
                return
            if r.status_code == 404 and code(r) == "BLOB_UPLOAD_UNKNOWN":
                raise Restart
            if r.status_code == 400 and code(r) == "BLOB_UPLOAD_INVALID":
                self.pause(0.5)
                continue
            raise Unexpected(f"PUT of {location} ({len(body)} bytes): {r.status_code} {r.text[:300]}")

    # images

    def push_image(self) -> None:
        rng = self.rng
        layers = [rng.randbytes(blob_size(rng)) for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.5:  # a base layer every client pushes: the same blob committed at once
            layers.insert(0, rng.choice(self.shared))
        config = json.dumps({"architecture": "amd64", "os": "linux", "n": rng.random()}).encode()
        digests = [self.push_blob(data) for data in [config, *layers]]
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config),
                       "digest": digests[0]},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": len(data), "digest": digest}
                       for data, digest in zip(layers, digests[1:], strict=True)],
        }).encode()
        tag = rng.choice(TAGS)
        self.begin(f"manifest {self.repository}:{tag}")
        while True:
            try:
                r = self.send("PUT", f"/v2/{self.repository}/manifests/{tag}", content=manifest,
                              headers={"Content-Type": OCI_MANIFEST})
            except httpx.TransportError:
                self.pause()
                continue
            if r.status_code != 201:
                raise Unexpected(f"PUT of {self.repository}:{tag}: {r.status_code} {r.text[:300]}")
            break
        with self.ledger.lock:
            self.ledger.manifests[(self.repository, sha256(manifest))] = manifest
            self.ledger.tags[(self.repository, tag)] = manifest

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.push_image()
        except Unexpected as exc:
            self.ledger.fail(str(exc))
        except Exception as exc:  # noqa: BLE001 - reported with the seed
            self.ledger.fail(f"{type(exc).__name__}: {exc}")
        finally:
            for client in self.clients:
                client.close()


def killer(replicas: Deployment, seed: int, ledger: Ledger, stop: threading.Event) -> None:
    """SIGKILL a random replica (its workers and server) at random moments, and start it again."""
    rng = random.Random(seed)
    try:
        while not stop.wait(rng.uniform(*KILL_EVERY)):
            victim = rng.choice(replicas.replicas)
            kill_replica(victim)
            with ledger.lock:
                ledger.kills += 1
            time.sleep(rng.uniform(*DOWN_FOR))
            victim.start()
    except Exception as exc:  # noqa: BLE001 - reported with the seed
        ledger.fail(f"killer: {type(exc).__name__}: {exc}")


def check_reads(urls: list[str], ledger: Ledger) -> None:
    """Every acknowledged blob (HEAD and GET) and manifest (by digest, and its tag's latest) on every replica."""
    for url in urls:
        with httpx.Client(base_url=url, timeout=120) as client:
            for digest, (size, repositories) in ledger.blobs.items():
                for repository in repositories:
                    head = client.head(f"/v2/{repository}/blobs/{digest}")
                    assert head.status_code == 200, f"{url}: HEAD {repository}@{digest}: {head.status_code}"
                    assert int(head.headers["content-length"]) == size, f"{url}: HEAD {digest}: wrong size"
                    assert head.headers["docker-content-digest"] == digest
                got = client.get(f"/v2/{min(repositories)}/blobs/{digest}", follow_redirects=True)
                assert got.status_code == 200, f"{url}: GET {digest}: {got.status_code} {got.text[:300]}"
                assert len(got.content) == size and sha256(got.content) == digest, f"{url}: GET {digest}: other bytes"
            accept = {"Accept": OCI_MANIFEST}
            for (repository, digest), manifest in ledger.manifests.items():
                got = client.get(f"/v2/{repository}/manifests/{digest}", headers=accept)
                assert got.status_code == 200 and got.content == manifest, f"{url}: {repository}@{digest}"
            for (repository, tag), manifest in ledger.tags.items():
                got = client.get(f"/v2/{repository}/manifests/{tag}", headers=accept)
                assert got.status_code == 200 and got.content == manifest, f"{url}: {repository}:{tag}"


def check_blob_rows(replicas: Deployment) -> None:
    """Every blob row names an object, and the object holds its digest's bytes."""
    stored = S3Blobs(replicas.replicas[0].env, replicas.database_url)
    keys = stored.blobs()
    rows = {str(row[0]) for row in query(replicas.database_url, "SELECT digest FROM blobs")}
    assert rows <= set(keys), f"blob rows without an object: {sorted(rows - set(keys))}"
    listed = {str(item["Key"]) for page in stored.client.get_paginator("list_objects_v2").paginate(
        Bucket=stored.bucket, Prefix=stored.prefix) for item in page.get("Contents", [])}
    assert set(keys.values()) <= listed, f"blob rows whose object is missing: {set(keys.values()) - listed}"
    for digest, key in keys.items():
        assert digest_of(stored, key, "sha256") == digest, f"{key} does not hold {digest}"


@pytest.fixture()
def two(postgres: PostgresCluster, tmp_path: Path) -> Iterator[Deployment]:
    """Two replicas on a SeaweedFS of their own: the loop writes several hundred MB, more than the shared
    one holds besides the other tests' blobs (it reclaims deleted space only when vacuumed)."""
    seaweedfs = start_seaweedfs(Path(tempfile.mkdtemp(prefix="cargohold-s3-")), volumes=40)
    try:
        with deployment(tmp_path, 2, postgres, seaweedfs,
                        env={"CARGOHOLD_STORAGE_S3_PART_SIZE": str(PART)}) as replicas:
            yield replicas
    finally:
        seaweedfs.stop()


def test_acknowledged_pushes_survive_replicas_killed_at_random(two: Deployment) -> None:
    seed = int(os.environ.get("CARGOHOLD_CRASH_SEED") or random.randrange(1 << 32))
    print(f"crash loop seed: {seed} (CARGOHOLD_CRASH_SEED={seed} repeats it)")
    rng = random.Random(seed)
    shared = [rng.randbytes(size) for size in (PART + 1, 300_000)]
    ledger = Ledger()
    stop_pushing, stop_killing = threading.Event(), threading.Event()
    pushers = [Pusher(n, two.urls(), seed, shared, ledger, stop_pushing) for n in range(CLIENTS)]
    threads = [threading.Thread(target=pusher.run, daemon=True) for pusher in pushers]
    chaos = threading.Thread(target=killer, args=(two, seed, ledger, stop_killing), daemon=True)
    for thread in [*threads, chaos]:
        thread.start()
    time.sleep(PUSHING_SECONDS)
    deadline = time.monotonic() + GIVE_UP_SECONDS
    while ledger.kills < FEWEST_KILLS and time.monotonic() < deadline and chaos.is_alive():
        time.sleep(0.1)
    stop_killing.set()
    chaos.join(60)
    stop_pushing.set()
    for thread in threads:
        thread.join(120)
    stuck = [pusher.doing for pusher, thread in zip(pushers, threads, strict=True) if thread.is_alive()]
    assert not chaos.is_alive() and not stuck, f"seed {seed}: stuck: killer {chaos.is_alive()}, clients {stuck}"
    print(f"seed {seed}: {ledger.kills} kills, {ledger.retries} retries, {len(ledger.blobs)} blobs and "
          f"{len(ledger.manifests)} manifests acknowledged, {ledger.busy} answers 429/503")
    assert ledger.failures == [], f"seed {seed}: {ledger.failures}"
    assert ledger.kills >= FEWEST_KILLS and ledger.manifests, f"seed {seed}: too little happened"
    for replica in two.replicas:
        assert replica.process is not None and replica.process.poll() is None

    check_reads(two.urls(), ledger)
    check_blob_rows(two)

    # the purge of abandoned uploads and the sweep, as the replicas' jobs run them with short settings
    for replica in two.replicas:
        replica.stop()
        replica.env.update({"CARGOHOLD_UPLOAD_MAX_AGE_SECONDS": "1", "CARGOHOLD_STORAGE_S3_ORPHAN_GRACE_SECONDS": "1"})
        replica.start()
    stored = S3Blobs(two.replicas[0].env, two.database_url)
    deadline = time.monotonic() + 30
    while True:
        left = stored.strays(), stored.uploads()
        if left == ([], set()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert left == ([], set()), f"seed {seed}: left after the purge and the sweep: {left}"
    check_blob_rows(two)
    check_reads(two.urls(), ledger)
