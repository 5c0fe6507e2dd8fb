"""Hostile input to the token-checking and administration paths: 401 or 400, never a 500."""

from __future__ import annotations

import base64
import json

import httpx

from tests.api.helpers import codes

from .world import PRIVATE, SECRETS, World, basic


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_deeply_nested_token_is_401(world: World) -> None:
    deep = b64(b"[" * 2000 + b"]" * 2000)  # 5 KB, under the token length bound; read before any signature check
    for token in (f"{deep}.{b64(b'{}')}.{b64(b'x')}", f"{b64(b'{}')}.{deep}.{b64(b'x')}"):
        headers = {"Authorization": f"Bearer {token}"}
        r = httpx.get(f"{world.url}/v2/{PRIVATE}/tags/list", headers=headers)
        assert r.status_code == 401 and codes(r) == ["UNAUTHORIZED"], r.text
        r = httpx.get(f"{world.url}/admin/v1/whoami", headers=headers)
        assert r.status_code == 401 and codes(r) == ["UNAUTHORIZED"], r.text


def test_admin_bodies_deep_or_too_large_are_400(world: World) -> None:
    auth = {"Authorization": basic("root", SECRETS["root"])}
    url = f"{world.url}/admin/v1/repositories/owner/private-app/visibility"
    r = httpx.put(url, headers=auth, content=b'{"public": ' + b"[" * 2000 + b"]" * 2000 + b"}")
    assert r.status_code == 400 and codes(r) == ["BAD_REQUEST"], r.text
    big = json.dumps({"public": True, "padding": "x" * 70_000}).encode()
    r = httpx.put(url, headers=auth, content=big)
    assert r.status_code == 400 and "larger than" in r.json()["errors"][0]["message"], r.text
