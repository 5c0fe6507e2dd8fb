"""The access model's store contract: users, organizations, robots, teams, grants, public
repositories and refresh tokens (the values and their rules: :mod:`cargohold.access_model`).

Every change is atomic on its own: a method that writes several rows (deleting an
account while keeping an administrator, an organization with its owners team, a
grant replacing an older one) commits them together or not at all. A unit of work
of several changes runs in ``async with store.transaction() as tx:``, with the same
rules as the registry store's (:mod:`.store`): every ``tx`` call commits together,
or none does if the block raises; transactions do not nest; the block awaits only
``tx``'s methods (hash passwords before opening it).

Names and patterns are checked here too (:class:`~cargohold.access_model.InvalidName`),
so no caller can store a name the model refuses.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from ..access_model import Account, AccountKind, Permission, Role, Team
from ..events.log import EventLog
from ..immutable_tags import ImmutableRule
from ..quotas import Quota
from ..usage import UsageReport


class AccessQueries(EventLog, Protocol):
    """What the store answers and changes, on its own or inside a transaction; and the event log
    (the same database's), so that an administrator's change and its audit entry are one commit."""

    # accounts
    async def account(self, name: str) -> Account | None: ...
    async def require(self, name: str, *kinds: AccountKind) -> Account:
        """The account, or AccountUnknown if there is none of that name (and one of ``kinds``, if given)."""
        ...

    async def credentials(self, name: str) -> tuple[Account, str | None] | None:
        """An account and its stored secret hash (bcrypt for users, SHA-256 for robots)."""
        ...

    async def accounts(self, kind: AccountKind | None = None, owner: str | None = None) -> list[Account]:
        """By name; only of ``kind``, only robots of ``owner``, if given."""
        ...

    async def create_user(self, name: str, password_hash: str, superuser: bool = False) -> Account: ...
    async def create_organization(self, name: str, owners: Sequence[str]) -> Account:
        """An organization with its ``owners`` team holding ``owners`` (users)."""
        ...

    async def create_robot(self, owner: str, short: str, token_digest: str) -> Account: ...
    async def set_secret(self, name: str, secret_hash: str) -> None:
        """A new password or robot token: every access and refresh token issued before becomes void
        (a new credential generation; the account's refresh tokens are deleted)."""
        ...

    async def set_disabled(self, name: str, disabled: bool) -> None:
        """Disable (or enable) a user or robot; a new credential generation either way, and disabling
        deletes its refresh tokens. LastAdministrator for the last enabled superuser."""
        ...

    async def set_superuser(self, name: str, superuser: bool) -> None:
        """LastAdministrator when taking it from the last enabled superuser."""
        ...

    async def delete_account(self, name: str) -> None:
        """Delete a user, robot or organization, with its robots, teams, grants and refresh tokens;
        LastAdministrator for the last enabled superuser."""
        ...

    async def has_superuser(self) -> bool:
        """Whether there is an enabled superuser."""
        ...

    # teams
    async def create_team(self, organization: str, name: str) -> Team: ...
    async def delete_team(self, full_name: str) -> None:
        """Delete ``org/team``; the owners team cannot be deleted (InvalidName)."""
        ...

    async def teams(self, organization: str) -> list[Team]: ...
    async def set_member(self, full_name: str, member: str, present: bool) -> None:
        """Put a user or robot in a team (or take it out); either is a no-op if already so."""
        ...

    async def members(self, full_name: str) -> list[str]: ...
    async def teams_of(self, account: Account) -> list[Team]: ...
    async def owned_namespaces(self, account: Account) -> set[str]:
        """Namespaces ``account`` administers: its own (users) and those of organizations it owns."""
        ...

    async def namespace_owners(self, namespace: str) -> list[str]:
        """The user of that name, or the members of that organization's owners team."""
        ...

    # permissions
    async def grant(self, pattern: str, grantee: str, role: Role) -> None:
        """``role`` on a repository or ``ns/*`` for a user, robot or ``org/team``, replacing its former role."""
        ...

    async def revoke(self, pattern: str, grantee: str) -> bool:
        """False if the grantee held no grant on ``pattern``."""
        ...

    async def permissions(self, repository: str) -> list[Permission]:
        """Grants on ``repository`` itself and on its namespace (``ns/*``)."""
        ...

    async def permissions_of(self, account: Account) -> list[Permission]:
        """Grants to ``account`` and to the teams it belongs to."""
        ...

    # visibility
    async def set_public(self, repository: str, public: bool) -> None: ...
    async def is_public(self, repository: str) -> bool: ...
    async def public_repositories(self) -> set[str]: ...

    # immutable tag rules (:mod:`cargohold.immutable_tags`)
    async def immutable_rules(self) -> list[ImmutableRule]:
        """Every rule, oldest first."""
        ...

    async def add_immutable_rule(self, repository: str, tag: str, created_by: str | None) -> ImmutableRule:
        """ImmutableRuleInvalid for a bad pattern, ImmutableRuleExists for the same two patterns again."""
        ...

    async def remove_immutable_rule(self, rule_id: int) -> ImmutableRule:
        """The rule removed; ImmutableRuleUnknown if there is none of that id."""
        ...

    # namespace quotas (:mod:`cargohold.quotas`) and usage figures (:mod:`cargohold.usage`)
    async def quotas(self) -> list[Quota]:
        """Every quota, by namespace."""
        ...

    async def set_quota(self, namespace: str, limit: object, created_by: str | None) -> Quota:
        """Set or change a namespace's limit (bytes, or a size such as 50GiB); QuotaInvalid for a bad one."""
        ...

    async def clear_quota(self, namespace: str) -> Quota:
        """The quota lifted; QuotaUnknown if the namespace has none."""
        ...

    async def refresh_usage(self) -> int: ...

    async def usage_report(self, name: str | None = None) -> UsageReport: ...

    # refresh tokens
    async def add_refresh_token(self, digest: str, account: Account, client_id: str, lifetime: int) -> None:
        """A refresh token for ``account`` as read when its credentials were checked (its generation)."""
        ...

    async def refresh_token_account(self, digest: str) -> Account | None:
        """The account a live refresh token belongs to, if its credentials are still those it was issued under."""
        ...

    async def purge_refresh_tokens(self) -> int:
        """Delete expired refresh tokens; how many."""
        ...


class AccessStore(AccessQueries, Protocol):
    async def close(self) -> None: ...

    def transaction(self) -> AbstractAsyncContextManager[AccessQueries]:
        """A unit of work (see the module docstring): committed on leaving, rolled back on an exception."""
        ...
