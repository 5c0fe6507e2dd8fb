"""The UI's lists at scale: a repository of 10,000 tags and a catalog of 10,000 repositories, written straight
through the metadata layer, then paged, sorted and filtered through the UI; each page's time is the server's own
(its access log's duration). The limits asserted are generous: the bench is where speed is measured."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from cargohold.access_model import Role
from cargohold.auth.passwords import hash_password
from cargohold.metadata import open_metadata_store
from cargohold.metadata.store import NewManifest
from tests.auth.world import FAST_ENV, store_for
from tests.support.backends import MATRIX, setup_for
from tests.support.servers import CargoholdServer, cargohold

from .support import http_login

TAGS = 10_000
REPOSITORIES = 10_000
NAMESPACES = 10
BIG = "big/tags"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
#: what a page may take here at most (the machine is shared; the bench measures 100 ms)
LIMIT_SECONDS = 1.0


def manifest(number: int) -> NewManifest:
    content = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "annotations": {"n": str(number)},
                          "config": {}, "layers": []}).encode()
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    return NewManifest(digest, OCI_MANIFEST, content, None, None, None, ())


async def fill(url: str) -> None:
    meta = open_metadata_store(url)
    try:
        async with meta.transaction() as tx:
            big = await tx.ensure_repository(BIG)
            for number in range(TAGS):
                await tx.put_manifest(big, manifest(number), [f"t{number:05d}"])
            for number in range(REPOSITORIES):
                await tx.ensure_repository(f"ns{number % NAMESPACES}/repo{number:05d}")
    finally:
        await meta.close()


@dataclass
class Crowded:
    server: CargoholdServer

    def timed(self, client: httpx.Client, path: str, **params: str | int) -> tuple[str, float]:
        """The page, and how long the server took to answer it (from its access log)."""
        answer = client.get(path, params=params)
        assert answer.status_code == 200, answer.text
        request_id = answer.headers["x-request-id"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for line in reversed(self.server.log().splitlines()):
                if request_id in line and line.startswith("{"):
                    return answer.text, json.loads(line)["duration_ms"] / 1000
            time.sleep(0.02)
        raise AssertionError(f"no access log line for {path}")


@pytest.fixture(scope="module", params=MATRIX)
def crowded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crowded]:
    setup = setup_for(request.param, request)
    tmp = tmp_path_factory.mktemp("ui-crowded")
    store = store_for(tmp / "data", setup.database_url)
    store.create_user("root", hash_password("root-password-1", 4), superuser=True)
    store.create_user("dana", hash_password("dana-password-1", 4))
    store.grant("ns3/*", "dana", Role.READ)
    store.close()
    asyncio.run(fill(setup.database_url or f"sqlite://{tmp / 'data' / 'metadata.db'}"))
    with cargohold(tmp, "--auth", "token", env={**FAST_ENV, **setup.env}, database_url=setup.database_url) as server:
        yield Crowded(server)


def tags_on(page: str) -> list[str]:
    return re.findall(r'<a class="tag" href="[^"]+">([^<]+)</a>', page)


def next_cursor(page: str) -> str | None:
    found = re.search(r'rel="next" href="[^"]*(?:\?|&amp;)after=([^&"]+)', page)
    return httpx.QueryParams(f"after={found.group(1)}")["after"] if found else None


def test_a_repository_of_10000_tags_pages_sorts_and_filters(crowded: Crowded) -> None:
    times: dict[str, float] = {}
    with http_login(crowded.server.url, "root", "root-password-1") as root:
        path = f"/ui/repositories/{BIG}/-/tags"
        page, times["first page by name"] = crowded.timed(root, path)
        assert tags_on(page) == [f"t{n:05d}" for n in range(50)]
        page, times["page 150 by name"] = crowded.timed(root, path, after="t07449")
        assert tags_on(page) == [f"t{n:05d}" for n in range(7450, 7500)]
        page, times["filtered"] = crowded.timed(root, path, q="t099")
        assert tags_on(page) == [f"t{n:05d}" for n in range(9900, 9950)]
        assert tags_on(root.get(path, params={"q": "t099", "after": next_cursor(page)}).text) == \
            [f"t{n:05d}" for n in range(9950, 10_000)]

        page, times["first page by push"] = crowded.timed(root, path, sort="pushed", limit=500)
        seen, cursors = tags_on(page), []
        while (cursor := next_cursor(page)) is not None:
            cursors.append(cursor)
            page = root.get(path, params={"sort": "pushed", "limit": 500, "after": cursor}).text
            seen += tags_on(page)
        assert len(seen) == TAGS and set(seen) == {f"t{n:05d}" for n in range(TAGS)}
        assert seen[0] == f"t{TAGS - 1:05d}"  # pushed last (or in the same second, named last)
        middle = cursors[len(cursors) // 2]
        page, times["middle page by push"] = crowded.timed(root, path, sort="pushed", after=middle)
        assert tags_on(page) == seen[500 * (len(cursors) // 2 + 1):][:50]
    print("\ntags page, server-side:", {name: f"{seconds * 1000:.1f} ms" for name, seconds in times.items()})
    assert max(times.values()) < LIMIT_SECONDS, times


def test_a_catalog_of_10000_repositories_pages_and_filters(crowded: Crowded) -> None:
    times: dict[str, float] = {}
    path = "/ui/repositories"
    with http_login(crowded.server.url, "root", "root-password-1") as root:
        page, times["first page (superuser)"] = crowded.timed(root, path)
        names = re.findall(r'<a href="/ui/repositories/([^"]+)/-/tags">', page)
        assert names == [BIG, *sorted(f"ns{n % NAMESPACES}/repo{n:05d}" for n in range(REPOSITORIES))[:49]]
        page, times["namespace"] = crowded.timed(root, path, namespace="ns7")
        names = re.findall(r'<a href="/ui/repositories/([^"]+)/-/tags">', page)
        assert names == [f"ns7/repo{n:05d}" for n in range(7, 500, NAMESPACES)]
        page, times["search"] = crowded.timed(root, path, q="repo0999")
        assert re.findall(r'<a href="/ui/repositories/([^"]+)/-/tags">', page) == \
            [f"ns{n % NAMESPACES}/repo{n:05d}" for n in range(9990, 10_000)]
    with http_login(crowded.server.url, "dana", "dana-password-1") as dana:  # reads one namespace of ten
        page, times["first page (one namespace readable)"] = crowded.timed(dana, path)
        names = re.findall(r'<a href="/ui/repositories/([^"]+)/-/tags">', page)
        assert names == [f"ns3/repo{n:05d}" for n in range(3, 500, NAMESPACES)]
        following = next_cursor(page)
        assert following == "ns3/repo00493"
        page = dana.get(path, params={"after": following}).text
        names = re.findall(r'<a href="/ui/repositories/([^"]+)/-/tags">', page)
        assert names == [f"ns3/repo{n:05d}" for n in range(503, 1000, NAMESPACES)]
    print("\nrepositories page, server-side:", {name: f"{s * 1000:.1f} ms" for name, s in times.items()})
    assert max(times.values()) < LIMIT_SECONDS, times

