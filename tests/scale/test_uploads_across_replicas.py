"""An upload is shared state: any replica continues it, a dead replica leaves it resumable, and two
requests on it at once cannot both append."""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from .conftest import PART_SIZE, Deployment, MiB, kill_replica

#: the chunk each PATCH sends: not a divisor of the part size, so parts fill across requests
CHUNK = 2 * MiB + 3
SIZES = {
    "empty": 0, "one byte": 1, "5 MiB - 1": 5 * MiB - 1, "5 MiB": 5 * MiB, "5 MiB + 1": 5 * MiB + 1,
    "one part": PART_SIZE, "3.5 parts": PART_SIZE * 7 // 2,
}


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def path_of(location: str) -> str:
    """A Location as a path on any replica."""
    parts = urlsplit(location)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def clients(urls: list[str]) -> list[httpx.Client]:
    return [httpx.Client(base_url=url, timeout=60) for url in urls]


def patch(client: httpx.Client, location: str, start: int, data: bytes) -> httpx.Response:
    return client.patch(location, content=data, headers={
        "Content-Type": "application/octet-stream", "Content-Range": f"{start}-{start + len(data) - 1}"})


def check_blob(urls: list[str], repository: str, data: bytes) -> None:
    """Every replica serves the blob: HEAD from the database, GET following the redirect to the bucket."""
    digest = digest_of(data)
    for client in clients(urls):
        with client:
            head = client.head(f"/v2/{repository}/blobs/{digest}")
            assert head.status_code == 200 and int(head.headers["content-length"]) == len(data)
            got = client.get(f"/v2/{repository}/blobs/{digest}", follow_redirects=True)
            assert got.status_code == 200 and digest_of(got.content) == digest


#: every size over three replicas; the edges over two
CASES = [pytest.param(3, size, id=f"{name}, 3 replicas") for name, size in SIZES.items()] + [
    pytest.param(2, SIZES[name], id=f"{name}, 2 replicas") for name in ("empty", "5 MiB + 1", "3.5 parts")]


@pytest.mark.parametrize(("count", "size"), CASES)
def test_every_patch_on_another_replica(three: Deployment, count: int, size: int) -> None:
    urls = three.urls()[:count]
    data = os.urandom(size)
    repository = f"scale/chunked-{count}-{size}"
    turn = itertools.cycle(clients(urls))
    used = []
    client = next(turn)
    r = client.post(f"/v2/{repository}/blobs/uploads/")
    assert r.status_code == 202, r.text
    location = path_of(r.headers["location"])
    for start in range(0, size, CHUNK):
        client = next(turn)
        used.append(str(client.base_url))
        r = patch(client, location, start, data[start:start + CHUNK])
        assert r.status_code == 202, r.text
        assert r.headers["range"] == f"0-{min(start + CHUNK, size) - 1}"
        location = path_of(r.headers["location"])
    r = next(turn).put(location, params={"digest": digest_of(data)})
    assert r.status_code == 201, r.text
    if size > CHUNK:
        assert len(set(used)) == count
    check_blob(urls, repository, data)


def slow_body(data: bytes, piece: int, pause: float, sent: threading.Event | None = None) -> Iterator[bytes]:
    """``data`` in pieces with a pause after each; ``sent`` is set once the first piece is out."""
    for start in range(0, len(data), piece):
        yield data[start:start + piece]
        if sent is not None:
            sent.set()
        time.sleep(pause)


def test_a_replica_killed_mid_patch_and_the_upload_continues_on_another(three: Deployment) -> None:
    a, b, c = clients(three.urls())
    data = os.urandom(PART_SIZE * 2 + 12345)
    repository = "scale/killed"
    r = a.post(f"/v2/{repository}/blobs/uploads/")
    location = path_of(r.headers["location"])
    first = PART_SIZE + 77  # a full part and a tail
    assert patch(a, location, 0, data[:first]).status_code == 202

    victim = three.replicas[1]
    rest = data[first:]
    sent = threading.Event()
    outcome: list[BaseException | httpx.Response] = []

    def doomed() -> None:
        try:
            outcome.append(b.patch(location, content=slow_body(rest, MiB, 0.3, sent), headers={
                "Content-Type": "application/octet-stream", "Content-Length": str(len(rest)),
                "Content-Range": f"{first}-{len(data) - 1}"}))
        except httpx.HTTPError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=doomed)
    thread.start()
    try:
        assert sent.wait(30)
        time.sleep(1.0)  # more than a part's worth is on its way to the replica
        kill_replica(victim)
        thread.join(30)
        assert outcome and isinstance(outcome[0], httpx.HTTPError), outcome

        # the client asks another replica how far the upload got, and sends the rest from there
        status = c.get(location)
        assert status.status_code == 204, status.text
        have = int(status.headers["range"].rpartition("-")[2]) + 1
        assert have == first  # the killed request recorded nothing
        deadline = time.monotonic() + 30
        while True:
            r = patch(c, location, have, data[have:])
            if r.status_code == 202 or time.monotonic() > deadline:
                break
            assert r.status_code == 400 and r.json()["errors"][0]["code"] == "BLOB_UPLOAD_INVALID", r.text
            time.sleep(0.5)  # the dead replica's lock on the upload has not lapsed yet
        assert r.status_code == 202, r.text
        waited = 30 - (deadline - time.monotonic())
        assert waited < 20, f"the dead replica blocked the upload for {waited:.0f} s"
        r = a.put(path_of(r.headers["location"]), params={"digest": digest_of(data)})
        assert r.status_code == 201, r.text
        check_blob(three.urls()[::2], repository, data)
    finally:
        if victim.process is not None and victim.process.poll() is not None:
            victim.start()


def test_two_patches_racing_on_one_upload(three: Deployment) -> None:
    a, b, c = clients(three.urls())
    repository = "scale/race"
    r = a.post(f"/v2/{repository}/blobs/uploads/")
    location = path_of(r.headers["location"])
    head = os.urandom(1000)
    assert patch(a, location, 0, head).status_code == 202
    bodies = {"b": os.urandom(3 * MiB), "c": os.urandom(3 * MiB)}
    answers: dict[str, httpx.Response] = {}
    barrier = threading.Barrier(2)

    def send(name: str, client: httpx.Client) -> None:
        barrier.wait()
        body = bodies[name]
        answers[name] = client.patch(location, content=slow_body(body, MiB, 0.3), headers={
            "Content-Type": "application/octet-stream", "Content-Length": str(len(body)),
            "Content-Range": f"{len(head)}-{len(head) + len(body) - 1}"})

    threads = [threading.Thread(target=send, args=("b", b)), threading.Thread(target=send, args=("c", c))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    statuses = sorted(answer.status_code for answer in answers.values())
    assert statuses[0] == 202 and statuses[1] in (400, 416), {n: (a.status_code, a.text) for n, a in answers.items()}
    winner = next(name for name, answer in answers.items() if answer.status_code == 202)
    loser = answers["c" if winner == "b" else "b"]
    assert loser.json()["errors"][0]["code"] in ("BLOB_UPLOAD_INVALID", "RANGE_INVALID")
    data = head + bodies[winner]
    status = a.get(location)
    assert status.headers["range"] == f"0-{len(data) - 1}"
    r = a.put(location, params={"digest": digest_of(data)})
    assert r.status_code == 201, r.text
    check_blob(three.urls(), repository, data)
