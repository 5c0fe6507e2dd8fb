"""Who may do what on which repository: the rules, applied to what the store holds.

A caller's role on a repository is the highest of:

- admin, for a superuser (on every repository);
- admin, for the owners of its namespace (the user ``alice`` on ``alice/...``;
  the ``owners`` team of an organization on ``org/...``);
- the roles granted to the caller, or to a team it is in, on the repository
  or on its namespace (``ns/*``);
- read, for anyone (anonymous callers too), if the repository is public.

Robots own nothing: they get exactly what is granted to them or their teams.
Repositories that do not exist yet follow the same rules, so pushing into a
namespace you may write creates the repository, and the answer for a missing
repository is the answer for a private one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .access import CATALOG, Access
from .model import Account, AccountKind, Permission, Role, namespace_of, pattern_matches
from .store import AccessStore


class AccessView:
    """One caller's rights, loaded once per request (or once per catalog listing)."""

    def __init__(
        self, store: AccessStore, account: Account | None, owned: set[str], permissions: list[Permission]
    ) -> None:
        self.store = store
        self.account = account
        self._owned = owned
        self._permissions = permissions
        self._public: set[str] | None = None

    @property
    def anonymous(self) -> bool:
        return self.account is None

    def preload_public(self) -> None:
        """Read every public repository at once (for filtering a whole catalog)."""
        self._public = self.store.public_repositories()

    def _is_public(self, repository: str) -> bool:
        if self._public is not None:
            return repository in self._public
        return self.store.is_public(repository)

    def role(self, repository: str) -> Role | None:
        account = self.account
        if account is not None and account.superuser:
            return Role.ADMIN
        if namespace_of(repository) in self._owned:
            return Role.ADMIN
        best = max((p.role for p in self._permissions if pattern_matches(p.repository, repository)), default=None)
        if best is None and self._is_public(repository):
            return Role.READ
        return best

    def actions(self, repository: str) -> frozenset[str]:
        role = self.role(repository)
        return role.actions if role is not None else frozenset()

    def allows(self, access: Access) -> bool:
        if access == CATALOG:
            return True  # the listing itself is filtered by `visible`
        if access.type != "repository":
            return False
        return access.action in self.actions(access.name)

    def may_pull(self, repository: str) -> bool:
        return "pull" in self.actions(repository)

    def visible(self, names: Iterable[str]) -> list[str]:
        """The repositories of ``names`` this caller may pull, in order."""
        self.preload_public()
        return [name for name in names if self.may_pull(name)]

    def administers(self, repository: str) -> bool:
        return self.role(repository) is Role.ADMIN

    def owns_namespace(self, namespace: str) -> bool:
        return (self.account is not None and self.account.superuser) or namespace in self._owned


def load_view(store: AccessStore, account: Account | None) -> AccessView:
    """The rights of ``account`` (None: an anonymous caller). Disabled accounts have none."""
    if account is None or account.disabled:
        return AccessView(store, None, set(), [])
    return AccessView(store, account, store.owned_namespaces(account), store.permissions_of(account))


@dataclass(frozen=True, slots=True)
class Holder:
    """One line of ``who-can``: ``who`` holds ``role`` on a repository ``via`` a reason."""

    who: str
    role: Role
    via: str


def who_can(store: AccessStore, repository: str) -> list[Holder]:
    """Everyone with a role on ``repository``, with the reason, highest role first."""
    holders: list[Holder] = [
        Holder(account.name, Role.ADMIN, "superuser")
        for account in store.accounts(AccountKind.USER) if account.superuser and not account.disabled
    ]
    namespace = namespace_of(repository)
    if namespace is not None:
        holders += [Holder(owner, Role.ADMIN, f"owner of {namespace}") for owner in store.namespace_owners(namespace)]
    for permission in store.permissions(repository):
        via = "grant" if permission.repository == repository else f"grant on {permission.repository}"
        holders.append(Holder(permission.grantee, permission.role, via))
    if store.is_public(repository):
        holders.append(Holder("anonymous", Role.READ, "public"))
    return sorted(holders, key=lambda h: (-h.role, h.who, h.via))
