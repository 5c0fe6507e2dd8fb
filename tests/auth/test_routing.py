"""The token and admin endpoints sit in the API's one route table: its 404, its 405 with Allow, one writer.

On SQLite + filesystem only: routing answers before any store is read."""

from __future__ import annotations

import httpx
import pytest

from tests.api.helpers import codes
from tests.support.backends import SQLITE

from .world import World, basic

pytestmark = pytest.mark.parametrize("world", [SQLITE], indirect=True, scope="session")


@pytest.mark.parametrize("path", ["/nothing", "/auth/nothing", "/admin/v1/nothing", "/admin/v1"])
def test_an_unknown_path_gets_the_same_404_everywhere(world: World, path: str) -> None:
    r = httpx.get(f"{world.url}{path}")
    assert r.status_code == 404 and r.headers["content-type"] == "application/json"
    assert r.json() == {"errors": [{"code": "NOT_FOUND", "message": "no such API endpoint", "detail": path}]}


@pytest.mark.parametrize("method, path, allow", [
    ("DELETE", "/v2/", "GET, HEAD"),
    ("POST", "/admin/v1/whoami", "GET"),
    ("GET", "/admin/v1/users/someone", "DELETE, PATCH"),
    ("PUT", "/auth/jwks", "GET, HEAD"),
])
def test_a_method_a_route_does_not_answer_is_405_with_allow(world: World, method: str, path: str, allow: str) -> None:
    r = httpx.request(method, f"{world.url}{path}", headers={"Authorization": basic("root", "wrong")})
    assert r.status_code == 405 and codes(r) == ["UNSUPPORTED"], r.text
    assert r.headers["allow"] == allow


def test_the_token_endpoints_405_speaks_oauth_too(world: World) -> None:
    r = httpx.put(f"{world.url}/auth/token")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, POST"
    body = r.json()
    assert [e["code"] for e in body["errors"]] == ["UNSUPPORTED"]
    assert body["error"] == "invalid_request" and body["error_description"] == body["errors"][0]["message"]
    assert r.headers["cache-control"] == "no-store"
