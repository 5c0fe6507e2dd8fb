"""The access a request needs, derived in one place from its route and method.

Names follow Distribution's token spec: ``repository:<name>:pull|push|delete``
and ``registry:catalog:*``. GET and HEAD need pull; POST, PUT and PATCH need
pull and push; DELETE needs delete. A controller turns credentials into a
:class:`Grant` or raises ``Unauthorized`` (with a challenge) or ``Denied``;
it sees of a request only :class:`Credentials`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol


@dataclass(frozen=True, slots=True)
class Access:
    type: str
    name: str
    action: str

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{self.action}"


CATALOG = Access("registry", "catalog", "*")

_ACTIONS: Mapping[str, tuple[str, ...]] = {
    "GET": ("pull",),
    "HEAD": ("pull",),
    "POST": ("pull", "push"),
    "PUT": ("pull", "push"),
    "PATCH": ("pull", "push"),
    "DELETE": ("delete",),
}


def required_access(route: str, method: str, params: Mapping[str, str]) -> list[Access]:
    """What a request on ``route`` needs; empty for the base endpoint (any caller may ping)."""
    if route == "base":
        return []
    if route == "catalog":
        return [CATALOG]
    name = params.get("name", "")
    return [Access("repository", name, action) for action in _ACTIONS.get(method, ("pull",))]


@dataclass(frozen=True, slots=True)
class Grant:
    """What the caller was granted. ``everything`` is the open registry's grant.

    ``subject`` is the account (None: anonymous); ``issuer`` the issuer of the
    bearer token the caller presented (None without one).
    """

    subject: str | None = None
    everything: bool = False
    accesses: frozenset[Access] = field(default_factory=frozenset)
    issuer: str | None = None

    def allows(self, access: Access) -> bool:
        if self.everything or access in self.accesses:
            return True
        return Access(access.type, access.name, "*") in self.accesses

    def can_pull(self, repository: str) -> bool:
        return self.allows(Access("repository", repository, "pull"))


#: what a caller holds until an access controller answers: nothing
NOTHING: Final = Grant()


class Credentials(Protocol):
    """What a controller reads of a request: its headers, who sent it, and where it was sent."""

    @property
    def headers(self) -> Mapping[str, str]:
        """Lower-case names."""
        ...

    @property
    def client(self) -> str:
        """``address:port`` of the caller."""
        ...

    @property
    def origin(self) -> str:
        """``scheme://host`` as the caller reached this server."""
        ...


class AccessController(Protocol):
    async def authorize(self, credentials: Credentials, required: list[Access]) -> Grant:
        """Grant ``required`` or raise Unauthorized (with its challenge) or Denied."""
        ...

    async def catalog_filter(self, grant: Grant) -> Callable[[str], bool]:
        """Whether this caller may see a repository in the catalog (its rights are read once)."""
        ...

    async def pull_filter(self, grant: Grant) -> Callable[[str], bool]:
        """Whether this caller may pull a repository, whatever the token's scope names (rights read once)."""
        ...


#: whether a repository is read-only for every caller (a pull-through cache's): only pull is ever granted there
ReadOnly = Callable[[str], bool]


def writable(repository: str) -> bool:
    """The :data:`ReadOnly` of a registry without read-only repositories."""
    return False


def read_only_refusals(required: list[Access], read_only: ReadOnly) -> list[Access]:
    """What of ``required`` no one is granted: anything but pull on a read-only repository."""
    if read_only is writable:  # no such repository: nothing to look at on each request
        return []
    return [access for access in required
            if access.type == "repository" and access.action != "pull" and read_only(access.name)]


def everything(repository: str) -> bool:
    """The catalog filter of a caller who may see every repository."""
    return True


class OpenAccess:
    """No authentication: everyone may do everything (the embedded default on localhost)."""

    _GRANT = Grant(everything=True)

    async def authorize(self, credentials: Credentials, required: list[Access]) -> Grant:
        return self._GRANT

    async def catalog_filter(self, grant: Grant) -> Callable[[str], bool]:
        return everything

    async def pull_filter(self, grant: Grant) -> Callable[[str], bool]:
        return everything
