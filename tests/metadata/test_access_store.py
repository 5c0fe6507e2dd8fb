"""The AccessStore contract, run against every implementation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from cargohold.access_model import (
    AccountExists,
    AccountKind,
    AccountUnknown,
    InvalidName,
    LastAdministrator,
    Permission,
    Role,
    TeamExists,
    TeamUnknown,
)
from cargohold.metadata import AccessStore, migrate, open_access_store
from cargohold.metadata.migrations import load_migrations, split_statements
from cargohold.metadata.sqlite_db import SqliteDatabase
from cargohold.metadata.store import MetadataError
from tests.support.postgres import BACKENDS, database_url

HASH = "$2b$04$" + "x" * 53

Scenario = Callable[[AccessStore], Awaitable[None]]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request, tmp_path)


def run(url: str, scenario: Scenario) -> None:
    async def main() -> None:
        store = open_access_store(url)
        try:
            await scenario(store)
        finally:
            await store.close()

    asyncio.run(main())


def test_accounts(url: str) -> None:
    async def scenario(store: AccessStore) -> None:
        alice = await store.create_user("alice", HASH)
        assert (alice.name, alice.kind, alice.superuser, alice.disabled, alice.owner) == (
            "alice", AccountKind.USER, False, False, None)
        assert await store.account("alice") == alice == await store.require("alice", AccountKind.USER)
        assert await store.credentials("alice") == (alice, HASH)
        assert await store.account("nobody") is None and await store.credentials("nobody") is None
        with pytest.raises(AccountUnknown, match="no organization named 'alice'"):
            await store.require("alice", AccountKind.ORGANIZATION)
        with pytest.raises(AccountUnknown, match="no account named 'nobody'"):
            await store.require("nobody")
        root = await store.create_user("root", HASH, superuser=True)
        assert root.superuser and await store.has_superuser()
        assert [a.name for a in await store.accounts()] == ["alice", "root"]
        assert [a.name for a in await store.accounts(AccountKind.ORGANIZATION)] == []
        await store.set_superuser("alice", True)
        await store.set_superuser("root", False)
        assert (await store.require("alice")).superuser and not (await store.require("root")).superuser
        await store.delete_account("root")
        assert await store.account("root") is None

    run(url, scenario)


def test_robots(url: str) -> None:
    async def scenario(store: AccessStore) -> None:
        await store.create_user("alice", HASH)
        robot = await store.create_robot("alice", "ci", "digest-1")
        assert (robot.name, robot.kind, robot.owner) == ("alice+ci", AccountKind.ROBOT, "alice")
        assert await store.credentials("alice+ci") == (robot, "digest-1")
        await store.set_secret("alice+ci", "digest-2")
        found = await store.credentials("alice+ci")
        assert found is not None and found[1] == "digest-2"
        assert [a.name for a in await store.accounts(AccountKind.ROBOT, owner="alice")] == ["alice+ci"]
        assert await store.accounts(AccountKind.ROBOT, owner="bob") == []

    run(url, scenario)


def test_organizations_teams_and_members(url: str) -> None:
    async def scenario(store: AccessStore) -> None:
        for name in ("alice", "bob"):
            await store.create_user(name, HASH)
        await store.create_robot("bob", "ci", "x")
        acme = await store.create_organization("acme", ["alice"])
        assert acme.kind is AccountKind.ORGANIZATION
        assert [t.full_name for t in await store.teams("acme")] == ["acme/owners"]
        assert await store.members("acme/owners") == ["alice"]
        devs = await store.create_team("acme", "devs")
        assert devs.full_name == "acme/devs"
        await store.set_member("acme/devs", "bob", True)
        await store.set_member("acme/devs", "bob+ci", True)
        await store.set_member("acme/devs", "bob", True)  # already a member: no change
        assert await store.members("acme/devs") == ["bob", "bob+ci"]
        bob = await store.require("bob")
        assert [t.full_name for t in await store.teams_of(bob)] == ["acme/devs"]
        assert await store.owned_namespaces(bob) == {"bob"}
        assert await store.owned_namespaces(await store.require("alice")) == {"alice", "acme"}
        assert await store.owned_namespaces(await store.require("bob+ci")) == set()  # robots own nothing
        assert await store.namespace_owners("acme") == ["alice"]
        assert await store.namespace_owners("bob") == ["bob"]
        assert await store.namespace_owners("nobody") == []
        await store.set_member("acme/devs", "bob", False)
        assert await store.members("acme/devs") == ["bob+ci"]
        await store.delete_team("acme/devs")
        assert [t.name for t in await store.teams("acme")] == ["owners"]

    run(url, scenario)


def test_grants_permissions_and_revoke(url: str) -> None:
    async def scenario(store: AccessStore) -> None:
        for name in ("alice", "bob"):
            await store.create_user(name, HASH)
        await store.create_organization("acme", ["alice"])
        await store.create_team("acme", "devs")
        await store.set_member("acme/devs", "bob", True)
        await store.grant("acme/*", "acme/devs", Role.WRITE)
        await store.grant("acme/app", "bob", Role.READ)
        await store.grant("acme/app", "bob", Role.ADMIN)  # replaces the former role
        await store.grant("acme/other", "alice", Role.READ)
        assert sorted(await store.permissions("acme/app"), key=lambda p: p.repository) == [
            Permission("acme/*", "acme/devs", Role.WRITE), Permission("acme/app", "bob", Role.ADMIN),
        ]
        bob = await store.require("bob")
        assert sorted(await store.permissions_of(bob), key=lambda p: p.repository) == [
            Permission("acme/*", "acme/devs", Role.WRITE), Permission("acme/app", "bob", Role.ADMIN),
        ]
        assert await store.revoke("acme/app", "bob")
        assert not await store.revoke("acme/app", "bob")  # nothing left to revoke
        assert await store.revoke("acme/*", "acme/devs")
        assert await store.permissions("acme/app") == [] and await store.permissions_of(bob) == []

    run(url, scenario)


def test_public_repositories(url: str) -> None:
    async def scenario(store: AccessStore) -> None:
        assert not await store.is_public("alice/site")
        await store.set_public("alice/site", True)
        await store.set_public("alice/site", True)  # already public: no change
        await store.set_public("bob/docs", True)
        assert await store.is_public("alice/site")
        assert await store.public_repositories() == {"alice/site", "bob/docs"}
        await store.set_public("alice/site", False)
        assert not await store.is_public("alice/site")
        assert await store.public_repositories() == {"bob/docs"}
        with pytest.raises(InvalidName):
            await store.set_public("Not/Valid", True)

    run(url, scenario)


def test_refresh_tokens(url: str) -> None:
    async def scenario(store: AccessStore) -> None:
        alice = await store.create_user("alice", HASH)
        await store.add_refresh_token("live", alice, "client", 3600)
        await store.add_refresh_token("expired", alice, "client", -1)
        assert await store.refresh_token_account("live") == alice
        assert await store.refresh_token_account("expired") is None
        assert await store.refresh_token_account("unknown") is None
        assert await store.purge_refresh_tokens() == 1
        assert await store.purge_refresh_tokens() == 0
        await store.set_disabled("alice", True)  # disabling deletes them
        await store.set_disabled("alice", False)
        assert await store.refresh_token_account("live") is None

    run(url, scenario)


def test_a_new_secret_or_disabling_bumps_the_credential_generation(url: str) -> None:
    """Access and refresh tokens carry the generation they were issued under: any change of
    credentials gives the account a new one, higher than every generation given out before."""

    async def scenario(store: AccessStore) -> None:
        alice = await store.create_user("alice", HASH)
        bob = await store.create_user("bob", HASH)
        assert bob.credentials_generation > alice.credentials_generation
        await store.add_refresh_token("digest", alice, "client", 3600)
        await store.set_secret("alice", HASH)
        changed = await store.require("alice")
        assert changed.credentials_generation > bob.credentials_generation
        assert await store.refresh_token_account("digest") is None  # the new secret voids it
        await store.add_refresh_token("old", alice, "client", 3600)  # issued under the old generation
        assert await store.refresh_token_account("old") is None
        await store.add_refresh_token("digest", changed, "client", 3600)
        assert await store.refresh_token_account("digest") == changed
        await store.set_disabled("alice", True)
        disabled = await store.require("alice")
        assert disabled.disabled and disabled.credentials_generation > changed.credentials_generation
        await store.set_disabled("alice", False)
        enabled = await store.require("alice")
        assert enabled.credentials_generation > disabled.credentials_generation
        await store.set_superuser("alice", True)  # not a change of credentials
        assert (await store.require("alice")).credentials_generation == enabled.credentials_generation

    run(url, scenario)


def test_refusals(url: str) -> None:
    async def scenario(store: AccessStore) -> None:
        await store.create_user("alice", HASH, superuser=True)
        with pytest.raises(AccountExists):
            await store.create_user("alice", HASH)
        with pytest.raises(InvalidName):
            await store.create_user("Alice", HASH)
        with pytest.raises(InvalidName):
            await store.create_user("a+b", HASH)
        with pytest.raises(InvalidName):
            await store.create_robot("alice", "CI", "x")
        with pytest.raises(AccountUnknown):
            await store.create_robot("nobody", "ci", "x")
        with pytest.raises(AccountUnknown):
            await store.create_organization("acme", ["nobody"])
        assert await store.account("acme") is None  # nothing half-made
        await store.create_organization("acme", [])
        with pytest.raises(AccountExists):
            await store.create_organization("acme", [])
        with pytest.raises(TeamExists):
            await store.create_team("acme", "owners")
        with pytest.raises(TeamUnknown):
            await store.grant("acme/app", "acme/nope", Role.READ)
        with pytest.raises(AccountUnknown):
            await store.grant("acme/app", "acme", Role.READ)  # organizations do not log in: grant to a team
        with pytest.raises(InvalidName):
            await store.grant("Not/Valid", "alice", Role.READ)
        with pytest.raises(InvalidName):
            await store.delete_team("acme/owners")
        with pytest.raises(AccountUnknown):
            await store.set_member("acme/owners", "acme", True)  # only users and robots are members

    run(url, scenario)


def test_the_last_administrator_stays(url: str) -> None:
    async def scenario(store: AccessStore) -> None:
        await store.create_user("alice", HASH, superuser=True)
        for change in (store.set_disabled("alice", True), store.set_superuser("alice", False),
                       store.delete_account("alice")):
            with pytest.raises(LastAdministrator):
                await change
        alice = await store.require("alice")
        assert alice.superuser and not alice.disabled
        await store.create_user("bob", HASH, superuser=True)
        await store.set_disabled("bob", True)  # a disabled superuser is no administrator
        with pytest.raises(LastAdministrator):
            await store.delete_account("alice")
        await store.set_disabled("bob", False)
        await store.set_disabled("alice", True)
        assert await store.has_superuser()
        with pytest.raises(LastAdministrator):
            await store.set_superuser("bob", False)

    run(url, scenario)


def test_deleting_an_account_takes_its_robots_grants_and_memberships(url: str) -> None:
    async def scenario(store: AccessStore) -> None:
        await store.create_user("alice", HASH)
        bob = await store.create_user("bob", HASH)
        await store.create_robot("bob", "ci", "x")
        await store.create_organization("acme", ["alice", "bob"])
        await store.grant("alice/app", "bob", Role.READ)
        await store.add_refresh_token("digest", bob, "client", 3600)
        await store.delete_account("bob")
        assert await store.account("bob+ci") is None
        assert await store.members("acme/owners") == ["alice"]
        assert await store.permissions("alice/app") == []
        await store.create_user("bob", HASH)  # the name is free again, and the old token is not the new bob's
        assert await store.refresh_token_account("digest") is None
        await store.delete_account("acme")  # an organization takes its teams
        assert await store.teams("acme") == []

    run(url, scenario)


def test_a_transaction_commits_its_changes_together(url: str) -> None:
    async def scenario(store: AccessStore) -> None:
        async with store.transaction() as tx:
            await tx.create_user("alice", HASH)
            await tx.create_organization("acme", ["alice"])
            await tx.grant("acme/app", "alice", Role.READ)
            assert await tx.members("acme/owners") == ["alice"]  # its own writes are visible inside
        assert await store.members("acme/owners") == ["alice"]
        assert await store.permissions("acme/app") == [Permission("acme/app", "alice", Role.READ)]

    run(url, scenario)


def test_a_transaction_that_raises_leaves_nothing(url: str) -> None:
    async def scenario(store: AccessStore) -> None:
        await store.create_user("root", HASH, superuser=True)
        with pytest.raises(RuntimeError):
            async with store.transaction() as tx:
                await tx.create_user("alice", HASH)
                await tx.create_organization("acme", ["alice"])
                await tx.set_public("acme/app", True)
                await tx.set_disabled("root", False)
                raise RuntimeError("after the changes")
        assert await store.account("alice") is None and await store.account("acme") is None
        assert not await store.is_public("acme/app")
        with pytest.raises(AccountExists):  # a refusal inside rolls the earlier changes back too
            async with store.transaction() as tx:
                await tx.create_user("alice", HASH)
                await tx.create_user("root", HASH)
        assert await store.account("alice") is None
        async with store.transaction() as tx:  # and the store works on
            await tx.create_user("alice", HASH)
        assert await store.account("alice") is not None

    run(url, scenario)


def test_transactions_do_not_nest(url: str) -> None:
    async def scenario(store: AccessStore) -> None:
        with pytest.raises(MetadataError, match="do not nest"):
            async with store.transaction(), store.transaction():
                pass

    run(url, scenario)


def test_two_stores_on_one_database_see_each_others_writes(url: str) -> None:
    """Every worker process opens its own store on the same database."""

    async def scenario(one: AccessStore) -> None:
        two = open_access_store(url)
        try:
            await one.create_user("alice", HASH)
            assert await two.account("alice") is not None
            async with two.transaction() as tx:
                await tx.grant("alice/app", "alice", Role.WRITE)
                await tx.set_public("alice/app", True)
            assert await one.permissions("alice/app") == [Permission("alice/app", "alice", Role.WRITE)]
            assert await one.is_public("alice/app")
            await two.set_secret("alice", HASH)
            assert (await one.require("alice")).credentials_generation == (
                await two.require("alice")).credentials_generation
        finally:
            await two.close()

    run(url, scenario)


def test_credential_generations_are_added_to_an_existing_sqlite_database(tmp_path: Path) -> None:
    """The credential-generations migration on a database made before it: each account gets its own
    generation, live refresh tokens keep working, and generations given out afterwards are new."""
    path = tmp_path / "m.db"
    db = SqliteDatabase(str(path))
    db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
               "applied_at BIGINT NOT NULL)")
    for migration in load_migrations("sqlite"):  # every other one, as an older cargohold left it
        if migration.name != "credential_generations":
            for statement in split_statements(migration.sql):
                db.execute(statement)
            db.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (migration.version, migration.name))
    for name in ("alice", "bob"):
        db.execute("INSERT INTO accounts (name, kind, secret_hash, superuser, disabled, credentials_changed_at, "
                   "created_at) VALUES (?, 'user', 'x', 0, 0, 0, 0)", (name,))
    db.execute("INSERT INTO refresh_tokens (token_hash, account_id, client_id, created_at, expires_at) "
               "SELECT 'digest', id, 'c', 0, 9999999999 FROM accounts WHERE name = 'bob'")
    db.close()
    url = f"sqlite://{path}"
    migrate(url)

    async def scenario(store: AccessStore) -> None:
        alice, bob = await store.require("alice"), await store.require("bob")
        assert alice.credentials_generation != bob.credentials_generation
        found = await store.refresh_token_account("digest")
        assert found is not None and found.name == "bob"
        await store.create_user("carol", HASH)
        assert (await store.require("carol")).credentials_generation > max(alice.credentials_generation,
                                                                          bob.credentials_generation)
        await store.set_disabled("bob", True)
        await store.set_disabled("bob", False)
        assert await store.refresh_token_account("digest") is None

    run(url, scenario)
