"""Tokens die with their account's credentials: a password change, a robot token rotation, disabling or
deleting the account voids every access and refresh token issued before, even one issued in the same
second as the change, and even one whose login was still being checked when the change landed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from cargohold.access_model import Role
from cargohold.auth.passwords import hash_password, secret_digest
from tests.api.helpers import codes

from .world import PRIVATE, SECRETS, SyncAccessStore, World, basic

PASSWORD = "first-password-1"
NEW_PASSWORD = "second-password-2"
ROBOT_SECRET = "chr_first-robot-token-0000000000000000"
NEW_ROBOT_SECRET = "chr_second-robot-token-000000000000000"


@pytest.fixture
def store(world: World) -> Iterator[SyncAccessStore]:
    store = world.store()
    yield store
    store.close()


def ask(world: World, name: str, secret: str) -> httpx.Response:
    """Ask for an access token for pulling PRIVATE and a refresh token, as ``name``."""
    return httpx.get(f"{world.url}/auth/token",
                     params={"scope": f"repository:{PRIVATE}:pull", "offline_token": "true", "client_id": "t"},
                     headers={"Authorization": basic(name, secret)}, timeout=30)


def issue(world: World, name: str, secret: str) -> tuple[str, str]:
    response = ask(world, name, secret)
    assert response.status_code == 200, response.text
    return response.json()["token"], response.json()["refresh_token"]


def status(world: World, token: str, path: str) -> int:
    return httpx.get(f"{world.url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code


def refresh(world: World, refresh_token: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": "t",
            "service": "cargohold", "scope": f"repository:{PRIVATE}:pull"}
    return httpx.post(f"{world.url}/auth/token", data=form, timeout=30)


def assert_void(world: World, token: str, refresh_token: str) -> None:
    for path in (f"/v2/{PRIVATE}/tags/list", "/v2/"):
        response = httpx.get(f"{world.url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert response.status_code == 401, (path, response.text)
        assert codes(response) == ["UNAUTHORIZED"]
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
    refused = refresh(world, refresh_token)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"] == "invalid_grant"


def next_second() -> None:
    """Wait for the start of the next whole second: what follows within a few milliseconds shares it."""
    time.sleep(1.0 - time.time() % 1.0 + 0.002)


def _recreate(store: SyncAccessStore, name: str) -> None:
    store.delete_account(name)
    store.create_user(name, hash_password(PASSWORD, 4))
    store.grant(PRIVATE, name, Role.READ)


CHANGES: dict[str, Callable[[SyncAccessStore, str], None]] = {
    "password changed": lambda store, name: store.set_secret(name, PASSWORD_HASH),
    "disabled": lambda store, name: store.set_disabled(name, True),
    "deleted": lambda store, name: store.delete_account(name),
    "deleted and made again": _recreate,
}
PASSWORD_HASH = hash_password(NEW_PASSWORD, 4)


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_change_in_the_same_second_voids_older_tokens(world: World, store: SyncAccessStore, change: str) -> None:
    name = "samesecond"
    store.create_user(name, hash_password(PASSWORD, 4))
    store.grant(PRIVATE, name, Role.READ)
    try:
        next_second()
        token, refresh_token = issue(world, name, PASSWORD)
        assert status(world, token, f"/v2/{PRIVATE}/tags/list") == 200
        CHANGES[change](store, name)
        assert_void(world, token, refresh_token)
        if change == "password changed":
            fresh, _ = issue(world, name, NEW_PASSWORD)
            assert status(world, fresh, f"/v2/{PRIVATE}/tags/list") == 200
        if change == "deleted and made again":  # the new account's own tokens work
            fresh, _ = issue(world, name, PASSWORD)
            assert status(world, fresh, f"/v2/{PRIVATE}/tags/list") == 200
    finally:
        if store.account(name) is not None:
            store.delete_account(name)


def test_a_robot_token_rotated_in_the_same_second_voids_older_tokens(world: World, store: SyncAccessStore) -> None:
    store.create_robot("owner", "samesecond", secret_digest(ROBOT_SECRET))
    store.grant(PRIVATE, "owner+samesecond", Role.READ)
    try:
        next_second()
        token, refresh_token = issue(world, "owner+samesecond", ROBOT_SECRET)
        assert status(world, token, f"/v2/{PRIVATE}/tags/list") == 200
        store.set_secret("owner+samesecond", secret_digest(NEW_ROBOT_SECRET))
        assert_void(world, token, refresh_token)
        fresh, _ = issue(world, "owner+samesecond", NEW_ROBOT_SECRET)
        assert status(world, fresh, f"/v2/{PRIVATE}/tags/list") == 200
    finally:
        store.delete_account("owner+samesecond")


def test_a_login_checked_while_the_password_changes_gets_void_tokens(world: World, store: SyncAccessStore) -> None:
    """The change lands while the server is still checking the old password (a slow bcrypt hash):
    the tokens that login then issues are void, though issued after the change."""
    old_hash = hash_password(PASSWORD, 14)  # ~1 s to check
    store.create_user("inflight", old_hash)
    store.grant(PRIVATE, "inflight", Role.READ)
    try:
        for pause in (0.2, 0.4, 0.8):  # until the change lands after the server has read the old hash
            store.set_secret("inflight", old_hash)
            with ThreadPoolExecutor(1) as pool:
                login = pool.submit(ask, world, "inflight", PASSWORD)
                time.sleep(pause)
                store.set_secret("inflight", PASSWORD_HASH)
                answer = login.result()
            if answer.status_code == 200:
                break
        assert answer.status_code == 200, "the change always landed before the old password was read"
        assert_void(world, answer.json()["token"], answer.json()["refresh_token"])
    finally:
        store.delete_account("inflight")


def admin(world: World, method: str, path: str, **kwargs: object) -> httpx.Response:
    return httpx.request(method, f"{world.url}/admin/v1{path}", timeout=30,
                         headers={"Authorization": basic("root", SECRETS["root"])}, **kwargs)  # type: ignore[arg-type]


def test_tokens_from_before_a_password_change_are_refused_when_reused(world: World) -> None:
    assert admin(world, "POST", "/users", json={"name": "changer", "password": PASSWORD}).status_code == 200
    assert admin(world, "PUT", f"/repositories/{PRIVATE}/permissions",
                 json={"grantee": "changer", "role": "read"}).status_code in (200, 204)
    try:
        token, refresh_token = issue(world, "changer", PASSWORD)
        assert status(world, token, f"/v2/{PRIVATE}/tags/list") == 200
        assert refresh(world, refresh_token).status_code == 200
        time.sleep(1.1)  # not the same second: the plain case
        changed = httpx.patch(f"{world.url}/admin/v1/users/changer", json={"password": NEW_PASSWORD},
                              headers={"Authorization": f"Bearer {token}"}, timeout=30)  # with the token itself
        assert changed.status_code == 200, changed.text
        assert_void(world, token, refresh_token)
        refused = httpx.get(f"{world.url}/auth/token", headers={"Authorization": basic("changer", PASSWORD)})
        assert refused.status_code == 401
        fresh, _ = issue(world, "changer", NEW_PASSWORD)
        assert status(world, fresh, f"/v2/{PRIVATE}/tags/list") == 200
    finally:
        admin(world, "DELETE", "/users/changer")


def test_tokens_of_a_deleted_account_are_refused_when_reused(world: World) -> None:
    assert admin(world, "POST", "/users", json={"name": "leaver", "password": PASSWORD}).status_code == 200
    assert admin(world, "PUT", f"/repositories/{PRIVATE}/permissions",
                 json={"grantee": "leaver", "role": "read"}).status_code in (200, 204)
    token, refresh_token = issue(world, "leaver", PASSWORD)
    assert status(world, token, f"/v2/{PRIVATE}/tags/list") == 200
    assert admin(world, "DELETE", "/users/leaver").status_code in (200, 204)
    assert_void(world, token, refresh_token)
    whoami = httpx.get(f"{world.url}/admin/v1/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert whoami.status_code == 401
