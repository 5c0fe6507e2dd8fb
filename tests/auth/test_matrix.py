"""The permission matrix: anonymous, reader, writer, admin, robot and another user; pull, push, delete and
catalog; on a public and a private repository. Each caller acts as a registry client would: the request,
then on a challenge a token for the challenged scope (with its credentials, if it has any), then the retry.

On SQLite + filesystem only: the grants these decisions read are the access store's, whose queries the store's
contract suite (tests/metadata/test_access_store.py) checks on PostgreSQL too, and the other auth tests run a
PostgreSQL + S3 server with the same cast."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.api.helpers import codes, sha256
from tests.support.backends import SQLITE

from .world import PRIVATE, PUBLIC, ROBOT, SECRETS, World, basic, push_image

CALLERS = [None, "reader", "writer", "admin", ROBOT, "other"]
HOLDERS = {"reader", "writer", "admin", ROBOT}
WRITERS = {"writer", "admin", ROBOT}
pytestmark = pytest.mark.parametrize("world", [SQLITE], indirect=True, scope="session")


def expected(who: str | None, repository: str, operation: str) -> int:
    allowed = {
        "pull": repository == PUBLIC or who in HOLDERS,
        "push": who in WRITERS,
        "delete": who in WRITERS,
    }[operation]
    if allowed:
        return {"pull": 200, "push": 201, "delete": 202}[operation]
    return 401 if who is None else 403


def as_client(
    world: World, who: str | None, method: str, path: str, accept: str | None = None, **kw: object
) -> httpx.Response:
    """One request the way docker, skopeo and podman make it: try, read the challenge, get a token, retry."""
    headers = {"Accept": accept} if accept else {}
    response = httpx.request(method, f"{world.url}{path}", headers=headers, **kw)  # type: ignore[arg-type]
    if response.status_code != 401:
        if who is None:
            return response
        # a logged-in client authenticates even where anonymous callers may read (it pinged /v2/ first)
        scope = {"GET": "pull", "HEAD": "pull", "DELETE": "delete"}.get(method, "pull,push")
        name = re.match(r"/v2/(.+)/(?:manifests|blobs|tags)/", path)
        scopes = [f"repository:{name.group(1)}:{scope}"] if name else ["registry:catalog:*"]
    else:
        header = response.headers["www-authenticate"]
        scopes = re.search(r'scope="([^"]*)"', header).group(1).split()  # type: ignore[union-attr]
    credentials = {"Authorization": basic(who, SECRETS[who])} if who else {}
    token = httpx.get(f"{world.url}/auth/token", params=[("service", "cargohold"), *(("scope", s) for s in scopes)],
                      headers=credentials).json()["token"]
    return httpx.request(method, f"{world.url}{path}", headers={**headers, "Authorization": f"Bearer {token}"},
                         **kw)  # type: ignore[arg-type]


def label(who: str | None) -> str:
    return who or "anonymous"


@pytest.mark.parametrize("repository", [PUBLIC, PRIVATE], ids=["public", "private"])
@pytest.mark.parametrize("who", CALLERS, ids=label)
def test_pull(world: World, who: str | None, repository: str) -> None:
    response = as_client(world, who, "GET", f"/v2/{repository}/manifests/v1",
                         accept="application/vnd.oci.image.manifest.v1+json")
    assert response.status_code == expected(who, repository, "pull"), response.text
    if response.status_code == 403:
        assert codes(response) == ["DENIED"]
    if response.status_code == 401:
        assert codes(response) == ["UNAUTHORIZED"]


@pytest.mark.parametrize("repository", [PUBLIC, PRIVATE], ids=["public", "private"])
@pytest.mark.parametrize("who", CALLERS, ids=label)
def test_push(world: World, who: str | None, repository: str) -> None:
    blob = f"pushed by {label(who)} into {repository}".encode()
    response = as_client(world, who, "POST", f"/v2/{repository}/blobs/uploads/", params={"digest": sha256(blob)},
                         content=blob)
    assert response.status_code == expected(who, repository, "push"), response.text


@pytest.mark.parametrize("repository", [PUBLIC, PRIVATE], ids=["public", "private"])
@pytest.mark.parametrize("who", CALLERS, ids=label)
def test_delete(world: World, who: str | None, repository: str) -> None:
    with world.client("owner", f"repository:{repository}:pull,push,delete") as owner:
        digest = push_image(owner, repository, f"delete-{label(who).replace('+', '-')}")
        response = as_client(world, who, "DELETE", f"/v2/{repository}/manifests/{digest}")
        assert response.status_code == expected(who, repository, "delete"), response.text
        still_there = owner.head(f"/v2/{repository}/manifests/{digest}").status_code == 200
    assert still_there == (response.status_code != 202)


@pytest.mark.parametrize("who", CALLERS, ids=label)
def test_catalog_lists_what_the_caller_may_pull(world: World, who: str | None) -> None:
    response = as_client(world, who, "GET", "/v2/_catalog")
    assert response.status_code == 200, response.text
    listed = set(response.json()["repositories"])
    assert PUBLIC in listed
    assert (PRIVATE in listed) == (who in HOLDERS)


def test_catalog_pages_over_the_visible_repositories_only(world: World) -> None:
    token = world.token("reader", "registry:catalog:*")
    seen: list[str] = []
    url = f"{world.url}/v2/_catalog?n=1"
    while url:
        response = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
        seen += response.json()["repositories"]
        link = response.headers.get("link")
        url = f"{world.url}{link.split(';')[0].strip('<>')}" if link else ""
    store = world.store()
    public = store.public_repositories()
    store.close()
    assert seen == sorted(set(seen))
    assert {PUBLIC, PRIVATE} <= set(seen) <= {PUBLIC, PRIVATE} | public
