"""Tags list and catalog, with n/last pagination and Link headers."""

from __future__ import annotations

import httpx

from tests.support.servers import CargoholdServer

from .helpers import OCI_MANIFEST, codes, image_manifest, put_manifest


def follow(client: httpx.Client, url: str, key: str, n: int) -> list[str]:
    seen: list[str] = []
    next_url: str | None = f"{url}?n={n}"
    while next_url:
        r = client.get(next_url)
        assert r.status_code == 200
        page = r.json()[key]
        assert len(page) <= n
        seen += page
        link = r.headers.get("link")
        next_url = link.split(";")[0].strip("<>") if link else None
    return seen


def test_tags_pagination(client: httpx.Client, repo: str) -> None:
    raw = image_manifest(client, repo)
    tags = sorted(f"t{i:03d}" for i in range(25)) + ["A", "latest", "z_last"]
    for tag in tags:
        assert put_manifest(client, repo, tag, raw, OCI_MANIFEST).status_code == 201
    r = client.get(f"/v2/{repo}/tags/list")
    assert r.json() == {"name": repo, "tags": sorted(tags)}
    assert "link" not in r.headers
    assert follow(client, f"/v2/{repo}/tags/list", "tags", 7) == sorted(tags)
    r = client.get(f"/v2/{repo}/tags/list", params={"n": 3, "last": "t010"})
    assert r.json()["tags"] == ["t011", "t012", "t013"]
    assert r.headers["link"] == f'</v2/{repo}/tags/list?n=3&last=t013>; rel="next"'
    assert client.get(f"/v2/{repo}/tags/list", params={"n": 0}).json()["tags"] == []
    r = client.get(f"/v2/{repo}/tags/list", params={"n": "many"})
    assert r.status_code == 400 and codes(r) == ["PAGINATION_NUMBER_INVALID"]


def test_tags_of_unknown_repository(client: httpx.Client) -> None:
    r = client.get("/v2/no/such/tags/list")
    assert r.status_code == 404 and codes(r) == ["NAME_UNKNOWN"]


def test_catalog_pagination(fresh_client: httpx.Client, fresh_registry: CargoholdServer) -> None:
    names = sorted(f"team{i % 3}/app{i:02d}" for i in range(14))
    for name in names:
        raw = image_manifest(fresh_client, name)
        put_manifest(fresh_client, name, "v1", raw, OCI_MANIFEST)
    assert fresh_client.get("/v2/_catalog").json() == {"repositories": names}
    assert follow(fresh_client, "/v2/_catalog", "repositories", 4) == names
    r = fresh_client.get("/v2/_catalog", params={"n": 2, "last": names[5]})
    assert r.json()["repositories"] == names[6:8]
    assert r.headers["link"] == f'</v2/_catalog?n=2&last={names[7]}>; rel="next"'
