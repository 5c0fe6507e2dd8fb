"""The access model without a server: the policy's rules, passwords, htpasswd, the rate limiter
(the store's own contract: tests/metadata/test_access_store.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from cargohold.access_model import (
    AccountKind,
    PasswordRejected,
    Role,
)
from cargohold.auth.access import CATALOG, Access
from cargohold.auth.htpasswd import HtpasswdError, HtpasswdFile, parse_htpasswd
from cargohold.auth.passwords import hash_password, secret_digest, secret_matches, verify_password
from cargohold.auth.policy import AccessView, Holder, load_view, who_can
from cargohold.auth.ratelimit import LoginLimiter, LoginLimits
from cargohold.errcodes import TooManyRequests
from cargohold.metadata import migrate, open_login_failures

from .world import SyncAccessStore, store_for


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[SyncAccessStore]:
    opened = store_for(tmp_path / "data")
    yield opened
    opened.close()


def user(store: SyncAccessStore, name: str, superuser: bool = False) -> None:
    store.create_user(name, "$2b$04$" + "x" * 53, superuser)


def view(store: SyncAccessStore, who: str | None) -> AccessView:
    return asyncio.run(load_view(store.inner, store.account(who) if who else None))


def actions(store: SyncAccessStore, who: str | None, repository: str) -> set[str]:
    return set(asyncio.run(view(store, who).actions(repository)))


def test_users_own_their_namespace_and_nothing_else(store: SyncAccessStore) -> None:
    user(store, "alice")
    user(store, "bob")
    assert actions(store, "alice", "alice/app") == {"pull", "push", "delete"}
    assert actions(store, "alice", "alice/deep/nested") == {"pull", "push", "delete"}
    assert actions(store, "alice", "bob/app") == set()
    assert actions(store, "alice", "alice") == set()  # one-component names belong to no namespace
    assert actions(store, None, "alice/app") == set()


def test_roles_from_grants_teams_and_namespace_patterns(store: SyncAccessStore) -> None:
    for name in ("alice", "bob", "carol", "dave"):
        user(store, name)
    store.create_organization("acme", ["alice"])
    store.create_team("acme", "readers")
    store.set_member("acme/readers", "bob", True)
    store.grant("acme/*", "acme/readers", Role.READ)
    store.grant("acme/app", "carol", Role.WRITE)
    store.grant("acme/app", "bob", Role.ADMIN)
    assert actions(store, "alice", "acme/anything") == {"pull", "push", "delete"}  # owners team
    assert actions(store, "bob", "acme/other") == {"pull"}
    assert asyncio.run(view(store, "bob").role("acme/app")) is Role.ADMIN  # highest role wins
    assert actions(store, "carol", "acme/app") == {"pull", "push", "delete"}
    assert actions(store, "carol", "acme/other") == set()
    assert actions(store, "dave", "acme/app") == set()
    store.set_member("acme/readers", "bob", False)
    assert actions(store, "bob", "acme/other") == set()


def test_public_repositories_are_readable_by_everyone(store: SyncAccessStore) -> None:
    user(store, "alice")
    store.set_public("alice/site", True)
    assert actions(store, None, "alice/site") == {"pull"}
    assert actions(store, "alice", "alice/site") == {"pull", "push", "delete"}
    store.set_public("alice/site", False)
    assert actions(store, None, "alice/site") == set()


def test_superusers_may_do_anything_and_robots_only_what_they_are_granted(store: SyncAccessStore) -> None:
    user(store, "root", superuser=True)
    user(store, "alice")
    robot = store.create_robot("alice", "ci", secret_digest("t"))
    assert robot.name == "alice+ci" and robot.owner == "alice" and robot.kind is AccountKind.ROBOT
    assert actions(store, "root", "anyone/anything") == {"pull", "push", "delete"}
    assert actions(store, "alice+ci", "alice/app") == set()
    store.grant("alice/app", "alice+ci", Role.READ)
    assert actions(store, "alice+ci", "alice/app") == {"pull"}
    store.set_disabled("alice+ci", True)
    assert actions(store, "alice+ci", "alice/app") == set()


def test_catalog_view_filters(store: SyncAccessStore) -> None:
    user(store, "alice")
    store.set_public("bob/public", True)
    alice = view(store, "alice")
    assert asyncio.run(alice.allows(CATALOG))
    assert asyncio.run(alice.visible(["alice/a", "bob/private", "bob/public", "single"])) == ["alice/a", "bob/public"]
    assert asyncio.run(view(store, None).visible(["alice/a", "bob/public"])) == ["bob/public"]
    assert not asyncio.run(alice.allows(Access("registry", "other", "*")))


def test_who_can(store: SyncAccessStore) -> None:
    user(store, "root", superuser=True)
    user(store, "alice")
    user(store, "bob")
    store.create_organization("acme", ["alice"])
    store.create_team("acme", "devs")
    store.grant("acme/*", "acme/devs", Role.WRITE)
    store.grant("acme/app", "bob", Role.READ)
    store.set_public("acme/app", True)
    assert asyncio.run(who_can(store.inner, "acme/app")) == [
        Holder("alice", Role.ADMIN, "owner of acme"),
        Holder("root", Role.ADMIN, "superuser"),
        Holder("acme/devs", Role.WRITE, "grant on acme/*"),
        Holder("anonymous", Role.READ, "public"),
        Holder("bob", Role.READ, "grant"),
    ]


def test_passwords() -> None:
    hashed = hash_password("correct horse", 4)
    assert hashed.startswith("$2b$04$")
    assert verify_password("correct horse", hashed)
    assert not verify_password("wrong horse", hashed)
    assert not verify_password("x" * 100, hashed)
    assert not verify_password("anything", None, 4)
    assert not verify_password("anything", "not-a-hash")
    with pytest.raises(PasswordRejected):
        hash_password("short", 4)
    with pytest.raises(PasswordRejected):
        hash_password("é" * 40, 4)
    assert secret_matches("token", secret_digest("token"))
    assert not secret_matches("token", None)


def test_htpasswd(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"pw-of-alice", bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$")
    path = tmp_path / "htpasswd"
    path.write_text(f"# users\nalice:{hashed}\n\n")
    htpasswd = HtpasswdFile(path)
    assert htpasswd.verify("alice", "pw-of-alice")
    assert not htpasswd.verify("alice", "wrong")
    assert not htpasswd.verify("bob", "pw-of-alice")
    with pytest.raises(HtpasswdError, match="not bcrypt"):
        parse_htpasswd("bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=")
    with pytest.raises(HtpasswdError):
        parse_htpasswd("no-colon")


def test_rate_limiter_refuses_pairs_and_addresses_and_only_slows_accounts(tmp_path: Path) -> None:
    migrate(f"sqlite://{tmp_path / 'm.db'}")
    now = [1000.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    limits = LoginLimits(per_account_address=2, per_address=3, per_account=4, max_delay=1.0, window=60)
    url = f"sqlite://{tmp_path / 'm.db'}"
    limiter = LoginLimiter(open_login_failures(url), limits, clock=lambda: now[0], sleep=sleep)
    other_worker = LoginLimiter(open_login_failures(url), limits, clock=lambda: now[0], sleep=sleep)

    def check(account: str | None, address: str) -> None:
        asyncio.run(limiter.check(account, address))

    def failed(limiter: LoginLimiter, account: str, address: str) -> None:
        asyncio.run(limiter.failed(account, address))

    check("alice", "10.0.0.1")
    failed(limiter, "alice", "10.0.0.1")
    failed(other_worker, "alice", "10.0.0.1")
    with pytest.raises(TooManyRequests) as refused:  # this address may not try alice again ...
        check("alice", "10.0.0.1")
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "60"
    assert refused.value.message == "too many failed logins; try again in 60 s"
    check("alice", "10.0.0.2")  # ... but alice may still log in from anywhere else
    check("bob", "10.0.0.1")  # and this address may try other names, until it has failed three times
    failed(limiter, "bob", "10.0.0.1")
    with pytest.raises(TooManyRequests):
        check("carol", "10.0.0.1")
    assert slept == []
    for address in ("10.0.0.3", "10.0.0.4"):  # alice's fourth failure: her logins are slowed, not refused
        failed(limiter, "alice", address)
    check("alice", "10.0.0.9")
    assert slept == [0.25]
    for address in ("10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.8"):
        failed(limiter, "alice", address)
        check("alice", "10.0.0.9")
    assert slept == [0.25, 0.5, 1.0, 1.0, 1.0]  # doubling, up to max_delay
    check("bob", "10.0.0.9")
    assert len(slept) == 5  # other names are not slowed
    now[0] += 61
    check("alice", "10.0.0.1")
    check("carol", "10.0.0.1")
    assert len(slept) == 5
