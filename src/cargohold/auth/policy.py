"""Who may do what on which repository: the rules, applied to what the store holds.

A caller's role on a repository is the highest of:

- admin, for a superuser (on every repository);
- admin, for the owners of its namespace (the user ``alice`` on ``alice/...``;
  the ``owners`` team of an organization on ``org/...``);
- the roles granted to the caller, or to a team it is in, on the repository
  or on its namespace (``ns/*``);
- read, for anyone (anonymous callers too), if the repository is public.

On a read-only repository (a pull-through cache's) a role grants pull only.

Robots own nothing: they get exactly what is granted to them or their teams.
Repositories that do not exist yet follow the same rules, so pushing into a
namespace you may write creates the repository, and the answer for a missing
repository is the answer for a private one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..access_model import Account, AccountKind, Permission, Role, namespace_of, pattern_matches
from ..metadata.access import AccessStore
from .access import CATALOG, Access, ReadOnly, writable

_PULL = frozenset({"pull"})


class AccessView:
    """One caller's rights, loaded once per request (or once per catalog listing)."""

    def __init__(
        self, store: AccessStore, account: Account | None, owned: set[str], permissions: list[Permission],
        read_only: ReadOnly = writable,
    ) -> None:
        self.store = store
        self.account = account
        self._owned = owned
        self._permissions = permissions
        self._public: set[str] | None = None
        self._read_only = read_only

    @property
    def anonymous(self) -> bool:
        return self.account is None

    async def preload_public(self) -> None:
        """Read every public repository at once (for filtering a whole catalog)."""
        self._public = await self.store.public_repositories()

    async def _is_public(self, repository: str) -> bool:
        if self._public is not None:
            return repository in self._public
        return await self.store.is_public(repository)

    def _held(self, repository: str) -> Role | None:
        """The caller's role on ``repository`` but for its being public."""
        account = self.account
        if account is not None and account.superuser:
            return Role.ADMIN
        if namespace_of(repository) in self._owned:
            return Role.ADMIN
        return max((p.role for p in self._permissions if pattern_matches(p.repository, repository)), default=None)

    async def role(self, repository: str) -> Role | None:
        best = self._held(repository)
        if best is None and await self._is_public(repository):
            return Role.READ
        return best

    async def actions(self, repository: str) -> frozenset[str]:
        role = await self.role(repository)
        if role is None:
            return frozenset()
        return role.actions & _PULL if self._read_only(repository) else role.actions

    async def allows(self, access: Access) -> bool:
        if access == CATALOG:
            return True  # the listing itself is filtered by `visible`
        if access.type != "repository":
            return False
        return access.action in await self.actions(access.name)

    async def may_pull(self, repository: str) -> bool:
        return "pull" in await self.actions(repository)

    async def pull_filter(self) -> Callable[[str], bool]:
        """Whether this caller may pull a repository, every public repository read once, now."""
        await self.preload_public()
        public = self._public or set()
        # every role includes pull, and a public repository is readable by everyone
        return lambda repository: self._held(repository) is not None or repository in public

    async def visible(self, names: Iterable[str]) -> list[str]:
        """The repositories of ``names`` this caller may pull, in order."""
        may_pull = await self.pull_filter()
        return [name for name in names if may_pull(name)]

    async def administers(self, repository: str) -> bool:
        return await self.role(repository) is Role.ADMIN

    def administered(self) -> tuple[str, ...] | None:
        """The repositories this caller administers, as names and ``ns/*`` patterns; None: every one."""
        if self.account is not None and self.account.superuser:
            return None
        owned = [f"{namespace}/*" for namespace in sorted(self._owned)]
        granted = [p.repository for p in self._permissions if p.role is Role.ADMIN]
        return tuple(dict.fromkeys([*owned, *granted]))

    def owns_namespace(self, namespace: str) -> bool:
        return (self.account is not None and self.account.superuser) or namespace in self._owned


async def load_view(store: AccessStore, account: Account | None, read_only: ReadOnly = writable) -> AccessView:
    """The rights of ``account`` (None: an anonymous caller). Disabled accounts have none."""
    if account is None or account.disabled:
        return AccessView(store, None, set(), [], read_only)
    return AccessView(store, account, await store.owned_namespaces(account), await store.permissions_of(account),
                      read_only)


@dataclass(frozen=True, slots=True)
class Holder:
    """One line of ``who-can``: ``who`` holds ``role`` on a repository ``via`` a reason."""

    who: str
    role: Role
    via: str


async def who_can(store: AccessStore, repository: str) -> list[Holder]:
    """Everyone with a role on ``repository``, with the reason, highest role first."""
    holders: list[Holder] = [
        Holder(account.name, Role.ADMIN, "superuser")
        for account in await store.accounts(AccountKind.USER) if account.superuser and not account.disabled
    ]
    namespace = namespace_of(repository)
    if namespace is not None:
        owners = await store.namespace_owners(namespace)
        holders += [Holder(owner, Role.ADMIN, f"owner of {namespace}") for owner in owners]
    for permission in await store.permissions(repository):
        via = "grant" if permission.repository == repository else f"grant on {permission.repository}"
        holders.append(Holder(permission.grantee, permission.role, via))
    if await store.is_public(repository):
        holders.append(Holder("anonymous", Role.READ, "public"))
    return sorted(holders, key=lambda h: (-h.role, h.who, h.via))
