"""The access model in the metadata database (:class:`~cargohold.metadata.access.AccessStore`), on any
:class:`~.sql.SqlDatabase`.

The tables come from the migrations (``0002_access.sql``, and ``0006_credential_generations.sql``
for credential generations). A method that reads and then writes does both in one transaction;
where SQLite's single writer (BEGIN IMMEDIATE) keeps two of them apart, a row lock does on
PostgreSQL: the credential generation counter is taken with ``UPDATE … RETURNING`` (held to the
commit), and the check that an administrator stays locks every enabled superuser's row, so two
administrators demoting each other at once cannot both succeed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

from ..access_model import (
    OWNERS_TEAM,
    Account,
    AccountExists,
    AccountKind,
    AccountUnknown,
    InvalidName,
    LastAdministrator,
    Permission,
    Role,
    Team,
    TeamExists,
    TeamUnknown,
    check_account_name,
    check_repository_pattern,
    check_team_name,
    namespace_of,
    robot_name,
    split_team_name,
)
from ..events.model import Event
from ..immutable_tags import ImmutableRule
from ..quotas import Quota
from ..usage import UsageReport
from . import sql_immutable, sql_usage
from .access import AccessQueries
from .sql import SqlDatabase
from .sql_events import insert_event, insert_events

_ACCOUNT_COLUMNS: Final = (
    "a.id, a.name, a.kind, a.superuser, a.disabled, o.name, a.credentials_generation, a.created_at"
)
_ACCOUNT_SELECT: Final = f"SELECT {_ACCOUNT_COLUMNS} FROM accounts a LEFT JOIN accounts o ON o.id = a.owner_id"
# the statements of every token request, as constants
_ACCOUNT_BY_NAME: Final = f"{_ACCOUNT_SELECT} WHERE a.name = ?"
_CREDENTIALS_BY_NAME: Final = (
    f"SELECT {_ACCOUNT_COLUMNS}, a.secret_hash FROM accounts a LEFT JOIN accounts o ON o.id = a.owner_id"
    " WHERE a.name = ?"
)
_ACCOUNT_BY_REFRESH_TOKEN: Final = (
    f"{_ACCOUNT_SELECT} JOIN refresh_tokens r ON r.account_id = a.id"
    " WHERE r.token_hash = ? AND r.expires_at > ? AND r.credentials_generation = a.credentials_generation"
)


def _now() -> int:
    return int(time.time())


def _account(row: Sequence[Any]) -> Account:
    return Account(
        id=int(row[0]), name=row[1], kind=AccountKind(row[2]), superuser=bool(row[3]), disabled=bool(row[4]),
        owner=row[5], credentials_generation=int(row[6]), created_at=int(row[7]),
    )


class SqlAccessStore:
    """Users, organizations, robots, teams, permissions, public repositories and refresh tokens."""

    def __init__(self, db: SqlDatabase) -> None:
        # the database must be migrated already: the migrations create the tables
        self._db = db

    async def close(self) -> None:
        await self._db.aclose()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AccessQueries]:
        async with self._db.unit_of_work():
            yield self

    # the event log, on this store's connection: inside its unit of work, committed with the change

    async def add_event(self, event: Event, deliver_to: Sequence[str] = ()) -> int:
        return await insert_event(self._db, event, deliver_to)

    async def add_events(self, events: Sequence[tuple[Event, Sequence[str]]]) -> None:
        await insert_events(self._db, events)

    # accounts

    async def _find(self, name: str) -> Account | None:
        row = await self._db.fetchone(_ACCOUNT_BY_NAME, (name,))
        return None if row is None else _account(row)

    async def _require(self, name: str, *kinds: AccountKind) -> Account:
        found = await self._find(name)
        if found is None or (kinds and found.kind not in kinds):
            what = " or ".join(k.value for k in kinds) or "account"
            raise AccountUnknown(f"no {what} named {name!r}")
        return found

    async def account(self, name: str) -> Account | None:
        return await self._find(name)

    async def require(self, name: str, *kinds: AccountKind) -> Account:
        return await self._require(name, *kinds)

    async def credentials(self, name: str) -> tuple[Account, str | None] | None:
        row = await self._db.fetchone(_CREDENTIALS_BY_NAME, (name,))
        return None if row is None else (_account(row), row[8])

    async def accounts(self, kind: AccountKind | None = None, owner: str | None = None) -> list[Account]:
        text, args = f"{_ACCOUNT_SELECT} WHERE 1 = 1", []
        if kind is not None:
            text, args = f"{text} AND a.kind = ?", [kind.value]
        if owner is not None:
            text, args = f"{text} AND o.name = ?", [*args, owner]
        return [_account(row) for row in await self._db.fetchall(f"{text} ORDER BY a.name", args)]

    async def _next_generation(self) -> int:
        """The next credential generation (migration 0006); the row stays locked to the commit."""
        row = await self._db.fetchone(
            "UPDATE credential_generation SET value = value + 1 WHERE only_row = 1 RETURNING value"
        )
        assert row is not None
        return int(row[0])

    async def _insert_account(
        self, name: str, kind: AccountKind, secret: str | None,
        superuser: bool = False, owner_id: int | None = None,
    ) -> Account:
        now = _now()
        count = await self._db.write(
            "INSERT INTO accounts (name, kind, owner_id, secret_hash, superuser, disabled, credentials_changed_at, "
            "credentials_generation, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
            (name, kind.value, owner_id, secret, superuser, False, now, await self._next_generation(), now),
        )
        if count == 0:
            raise AccountExists(f"the name {name!r} is taken")
        return await self._require(name)

    async def create_user(self, name: str, password_hash: str, superuser: bool = False) -> Account:
        check_account_name(name)
        async with self._db.atomic():
            return await self._insert_account(name, AccountKind.USER, password_hash, superuser)

    async def create_organization(self, name: str, owners: Sequence[str]) -> Account:
        check_account_name(name)
        async with self._db.atomic():
            members = [await self._require(owner, AccountKind.USER) for owner in owners]
            organization = await self._insert_account(name, AccountKind.ORGANIZATION, None)
            row = await self._db.fetchone(
                "INSERT INTO teams (organization_id, name, created_at) VALUES (?, ?, ?) RETURNING id",
                (organization.id, OWNERS_TEAM, _now()),
            )
            assert row is not None
            for member in members:
                await self._db.write("INSERT INTO team_members (team_id, account_id) VALUES (?, ?)",
                                     (int(row[0]), member.id))
            return organization

    async def create_robot(self, owner: str, short: str, token_digest: str) -> Account:
        name = robot_name(owner, short)
        async with self._db.atomic():
            owner_account = await self._require(owner, AccountKind.USER, AccountKind.ORGANIZATION)
            return await self._insert_account(name, AccountKind.ROBOT, token_digest, owner_id=owner_account.id)

    async def set_secret(self, name: str, secret_hash: str) -> None:
        async with self._db.atomic():
            account = await self._require(name, AccountKind.USER, AccountKind.ROBOT)
            await self._db.write("UPDATE accounts SET secret_hash = ?, credentials_changed_at = ?, "
                                 "credentials_generation = ? WHERE id = ?",
                                 (secret_hash, _now(), await self._next_generation(), account.id))
            await self._db.write("DELETE FROM refresh_tokens WHERE account_id = ?", (account.id,))

    async def set_disabled(self, name: str, disabled: bool) -> None:
        async with self._db.atomic():
            account = await self._require(name, AccountKind.USER, AccountKind.ROBOT)
            if disabled and account.superuser:
                await self._keep_an_administrator(account.id)
            await self._db.write("UPDATE accounts SET disabled = ?, credentials_changed_at = ?, "
                                 "credentials_generation = ? WHERE id = ?",
                                 (disabled, _now(), await self._next_generation(), account.id))
            if disabled:
                await self._db.write("DELETE FROM refresh_tokens WHERE account_id = ?", (account.id,))

    async def set_superuser(self, name: str, superuser: bool) -> None:
        async with self._db.atomic():
            account = await self._require(name, AccountKind.USER)
            if not superuser and account.superuser:
                await self._keep_an_administrator(account.id)
            await self._db.write("UPDATE accounts SET superuser = ? WHERE id = ?", (superuser, account.id))

    async def delete_account(self, name: str) -> None:
        async with self._db.atomic():
            account = await self._require(name)
            if account.superuser:
                await self._keep_an_administrator(account.id)
            # the foreign keys cascade to robots, teams, memberships, grants and refresh tokens
            await self._db.write("DELETE FROM accounts WHERE id = ?", (account.id,))

    async def _keep_an_administrator(self, leaving: int) -> None:
        # locked: a concurrent demotion of another administrator waits, then sees this one's
        rows = await self._db.fetchall(
            f"SELECT id FROM accounts WHERE superuser = ? AND disabled = ? ORDER BY id{self._db.for_update}",
            (True, False),
        )
        if not [row for row in rows if row[0] != leaving]:
            raise LastAdministrator("this is the last enabled administrator; make another one first")

    async def has_superuser(self) -> bool:
        row = await self._db.fetchone("SELECT COUNT(*) FROM accounts WHERE superuser = ? AND disabled = ?",
                                      (True, False))
        return bool(row and row[0])

    # teams

    async def _team(self, full_name: str) -> Team:
        organization, name = split_team_name(full_name)
        row = await self._db.fetchone(
            "SELECT t.id FROM teams t JOIN accounts o ON o.id = t.organization_id "
            "WHERE o.name = ? AND o.kind = ? AND t.name = ?",
            (organization, AccountKind.ORGANIZATION.value, name),
        )
        if row is None:
            raise TeamUnknown(f"no team {full_name!r}")
        return Team(int(row[0]), organization, name)

    async def create_team(self, organization: str, name: str) -> Team:
        check_team_name(name)
        async with self._db.atomic():
            org = await self._require(organization, AccountKind.ORGANIZATION)
            count = await self._db.write(
                "INSERT INTO teams (organization_id, name, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (organization_id, name) DO NOTHING",
                (org.id, name, _now()),
            )
            if count == 0:
                raise TeamExists(f"{organization} has a team {name!r} already")
            return await self._team(f"{organization}/{name}")

    async def delete_team(self, full_name: str) -> None:
        async with self._db.atomic():
            team = await self._team(full_name)
            if team.name == OWNERS_TEAM:
                raise InvalidName("the owners team cannot be deleted")
            await self._db.write("DELETE FROM teams WHERE id = ?", (team.id,))

    async def teams(self, organization: str) -> list[Team]:
        rows = await self._db.fetchall(
            "SELECT t.id, t.name FROM teams t JOIN accounts o ON o.id = t.organization_id "
            "WHERE o.name = ? ORDER BY t.name",
            (organization,),
        )
        return [Team(int(row[0]), organization, row[1]) for row in rows]

    async def set_member(self, full_name: str, member: str, present: bool) -> None:
        async with self._db.atomic():
            team = await self._team(full_name)
            account = await self._require(member, AccountKind.USER, AccountKind.ROBOT)
            if present:
                await self._db.write("INSERT INTO team_members (team_id, account_id) VALUES (?, ?) "
                                     "ON CONFLICT DO NOTHING", (team.id, account.id))
            else:
                await self._db.write("DELETE FROM team_members WHERE team_id = ? AND account_id = ?",
                                     (team.id, account.id))

    async def members(self, full_name: str) -> list[str]:
        team = await self._team(full_name)
        rows = await self._db.fetchall(
            "SELECT a.name FROM team_members m JOIN accounts a ON a.id = m.account_id "
            "WHERE m.team_id = ? ORDER BY a.name",
            (team.id,),
        )
        return [row[0] for row in rows]

    async def teams_of(self, account: Account) -> list[Team]:
        rows = await self._db.fetchall(
            "SELECT t.id, o.name, t.name FROM team_members m JOIN teams t ON t.id = m.team_id "
            "JOIN accounts o ON o.id = t.organization_id WHERE m.account_id = ? ORDER BY o.name, t.name",
            (account.id,),
        )
        return [Team(int(row[0]), row[1], row[2]) for row in rows]

    async def owned_namespaces(self, account: Account) -> set[str]:
        owned = {account.name} if account.kind is AccountKind.USER else set()
        owned.update(team.organization for team in await self.teams_of(account) if team.name == OWNERS_TEAM)
        return owned

    async def namespace_owners(self, namespace: str) -> list[str]:
        account = await self._find(namespace)
        if account is None:
            return []
        if account.kind is AccountKind.USER:
            return [account.name]
        if account.kind is AccountKind.ORGANIZATION:
            return await self.members(f"{namespace}/{OWNERS_TEAM}")
        return []

    # permissions

    async def _grantee(self, grantee: str) -> tuple[str, int]:
        if "/" in grantee:
            return "team_id", (await self._team(grantee)).id
        return "account_id", (await self._require(grantee, AccountKind.USER, AccountKind.ROBOT)).id

    async def grant(self, pattern: str, grantee: str, role: Role) -> None:
        check_repository_pattern(pattern)
        async with self._db.atomic():
            column, grantee_id = await self._grantee(grantee)
            await self._db.write(f"DELETE FROM repository_permissions WHERE repository = ? AND {column} = ?",
                                 (pattern, grantee_id))
            await self._db.write(
                f"INSERT INTO repository_permissions (repository, {column}, role, created_at) VALUES (?, ?, ?, ?)",
                (pattern, grantee_id, str(role), _now()),
            )

    async def revoke(self, pattern: str, grantee: str) -> bool:
        async with self._db.atomic():
            column, grantee_id = await self._grantee(grantee)
            return await self._db.write(f"DELETE FROM repository_permissions WHERE repository = ? AND {column} = ?",
                                        (pattern, grantee_id)) > 0

    _PERMISSIONS = (
        "SELECT p.repository, COALESCE(a.name, o.name || '/' || t.name), p.role FROM repository_permissions p "
        "LEFT JOIN accounts a ON a.id = p.account_id LEFT JOIN teams t ON t.id = p.team_id "
        "LEFT JOIN accounts o ON o.id = t.organization_id"
    )

    async def permissions(self, repository: str) -> list[Permission]:
        patterns = [repository]
        namespace = namespace_of(repository)
        if namespace is not None:
            patterns.append(f"{namespace}/*")
        among, args = self._db.any_of(patterns)
        rows = await self._db.fetchall(f"{self._PERMISSIONS} WHERE p.repository {among} ORDER BY p.repository", args)
        return [Permission(row[0], row[1], Role.parse(row[2])) for row in rows]

    async def permissions_of(self, account: Account) -> list[Permission]:
        rows = await self._db.fetchall(
            f"{self._PERMISSIONS} WHERE p.account_id = ? OR p.team_id IN "
            "(SELECT team_id FROM team_members WHERE account_id = ?)",
            (account.id, account.id),
        )
        return [Permission(row[0], row[1], Role.parse(row[2])) for row in rows]

    # visibility

    async def set_public(self, repository: str, public: bool) -> None:
        check_repository_pattern(repository)
        if public:
            await self._db.write(
                "INSERT INTO public_repositories (repository, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (repository, _now()),
            )
        else:
            await self._db.write("DELETE FROM public_repositories WHERE repository = ?", (repository,))

    async def is_public(self, repository: str) -> bool:
        row = await self._db.fetchone("SELECT 1 FROM public_repositories WHERE repository = ?", (repository,))
        return row is not None

    async def public_repositories(self) -> set[str]:
        return {row[0] for row in await self._db.fetchall("SELECT repository FROM public_repositories")}

    # refresh tokens

    async def add_refresh_token(self, digest: str, account: Account, client_id: str, lifetime: int) -> None:
        now = _now()
        await self._db.write(
            "INSERT INTO refresh_tokens (token_hash, account_id, client_id, created_at, expires_at, "
            "credentials_generation) VALUES (?, ?, ?, ?, ?, ?)",
            (digest, account.id, client_id, now, now + lifetime, account.credentials_generation),
        )

    async def refresh_token_account(self, digest: str) -> Account | None:
        found = await self._db.fetchone(_ACCOUNT_BY_REFRESH_TOKEN, (digest, _now()))
        return None if found is None else _account(found)

    async def purge_refresh_tokens(self) -> int:
        return await self._db.write("DELETE FROM refresh_tokens WHERE expires_at <= ?", (_now(),))

    # immutable tag rules

    async def immutable_rules(self) -> list[ImmutableRule]:
        return await sql_immutable.rules(self._db)

    async def add_immutable_rule(self, repository: str, tag: str, created_by: str | None) -> ImmutableRule:
        return await sql_immutable.add_rule(self._db, repository, tag, created_by)

    async def remove_immutable_rule(self, rule_id: int) -> ImmutableRule:
        return await sql_immutable.remove_rule(self._db, rule_id)

    # namespace quotas and usage figures

    async def quotas(self) -> list[Quota]:
        return await sql_usage.quotas(self._db)

    async def set_quota(self, namespace: str, limit: object, created_by: str | None) -> Quota:
        return await sql_usage.set_quota(self._db, namespace, limit, created_by)

    async def clear_quota(self, namespace: str) -> Quota:
        return await sql_usage.clear_quota(self._db, namespace)

    async def refresh_usage(self) -> int:
        return await sql_usage.refresh_usage(self._db)

    async def usage_report(self, name: str | None = None) -> UsageReport:
        return await sql_usage.usage_report(self._db, name)
