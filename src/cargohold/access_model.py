"""The access model's values: accounts, teams, roles and permissions, and their names.

Accounts share one name space. A *user* logs in with a password and owns the
namespace of its name (``alice/...``); an *organization* owns a namespace too
but never logs in (its ``owners`` team administers it); a *robot* is named
``owner+name``, belongs to a user or organization, and logs in with a
generated token. A *role* on a repository (read < write < admin) is granted to
an account or a team, on one repository or on a whole namespace (``ns/*``).

Exception tree::

    AccessModelError
    ├── InvalidName            a name breaks the grammar below
    ├── AccountExists          the name is taken
    ├── AccountUnknown         no such account (or not of the kind asked for)
    ├── TeamExists / TeamUnknown
    ├── PasswordRejected       too short or too long for bcrypt
    └── LastAdministrator      the operation would leave no enabled superuser
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Final

from .reference import is_repository_name

#: one repository path component (the distribution spec's grammar), so a user's name is a namespace
_COMPONENT: Final = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
ACCOUNT_NAME: Final = re.compile(_COMPONENT)
ROBOT_SHORT_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_]*")
TEAM_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]*")
#: Docker Hub allows 30; 63 leaves room for organizations named after DNS labels
NAME_MAX_LENGTH: Final = 63
#: the team an organization is created with; its members administer every repository of the organization
OWNERS_TEAM: Final = "owners"


class AccessModelError(Exception):
    """An access-model operation is invalid; the message says why."""


class InvalidName(AccessModelError):
    """A user, organization, robot, team or repository pattern breaks the naming rules."""


class AccountExists(AccessModelError):
    """An account of that name exists already."""


class AccountUnknown(AccessModelError):
    """No account of that name (and kind)."""


class TeamExists(AccessModelError):
    """The organization has a team of that name already."""


class TeamUnknown(AccessModelError):
    """No such team."""


class PasswordRejected(AccessModelError):
    """A new password is too short, or too long for bcrypt (72 bytes)."""


class LastAdministrator(AccessModelError):
    """The change would leave the registry without an enabled superuser."""


class AccountKind(StrEnum):
    USER = "user"
    ORGANIZATION = "organization"
    ROBOT = "robot"


class Role(IntEnum):
    """Repository roles, ordered: a higher role includes the lower ones."""

    READ = 1
    WRITE = 2
    ADMIN = 3

    @property
    def actions(self) -> frozenset[str]:
        """The token-spec actions this role allows (write includes deleting, as in Quay)."""
        return _ACTIONS[self]

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise AccessModelError(f"unknown role {text!r} (read, write or admin)") from None

    def __str__(self) -> str:
        return self.name.lower()


_ACTIONS: Final = {
    Role.READ: frozenset({"pull"}),
    Role.WRITE: frozenset({"pull", "push", "delete"}),
    Role.ADMIN: frozenset({"pull", "push", "delete"}),
}


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    name: str
    kind: AccountKind
    superuser: bool
    disabled: bool
    #: the owning user or organization of a robot
    owner: str | None
    #: changes with every change of credentials (password, robot token, disabled); access and refresh
    #: tokens carry the generation they were issued under and are void under any other
    credentials_generation: int
    created_at: int

    @property
    def can_log_in(self) -> bool:
        return self.kind is not AccountKind.ORGANIZATION and not self.disabled


@dataclass(frozen=True, slots=True)
class Team:
    id: int
    organization: str
    name: str

    @property
    def full_name(self) -> str:
        return f"{self.organization}/{self.name}"


@dataclass(frozen=True, slots=True)
class Permission:
    """``role`` on ``repository`` (a name, or ``ns/*``) for ``grantee`` (``alice``, ``alice+ci`` or ``org/team``)."""

    repository: str
    grantee: str
    role: Role

    @property
    def to_team(self) -> bool:
        return "/" in self.grantee


def check_account_name(name: str) -> str:
    if len(name) > NAME_MAX_LENGTH or not ACCOUNT_NAME.fullmatch(name):
        raise InvalidName(
            f"{name!r} is not a valid user or organization name "
            f"(lower-case letters, digits and single . _ - separators, at most {NAME_MAX_LENGTH} characters)"
        )
    return name


def robot_name(owner: str, short: str) -> str:
    """``owner+short``, checked."""
    check_account_name(owner)
    if not ROBOT_SHORT_NAME.fullmatch(short) or len(owner) + 1 + len(short) > NAME_MAX_LENGTH:
        raise InvalidName(f"{short!r} is not a valid robot name (lower-case letters, digits and _)")
    return f"{owner}+{short}"


def split_robot_name(name: str) -> tuple[str, str]:
    owner, plus, short = name.partition("+")
    if not plus:
        raise InvalidName(f"{name!r} is not a robot name (owner+name)")
    robot_name(owner, short)
    return owner, short


def check_team_name(name: str) -> str:
    if len(name) > NAME_MAX_LENGTH or not TEAM_NAME.fullmatch(name):
        raise InvalidName(f"{name!r} is not a valid team name (lower-case letters, digits, _ and -)")
    return name


def split_team_name(full_name: str) -> tuple[str, str]:
    organization, slash, team = full_name.partition("/")
    if not slash:
        raise InvalidName(f"{full_name!r} is not a team (organization/team)")
    return check_account_name(organization), check_team_name(team)


def namespace_of(repository: str) -> str | None:
    """The namespace owning a repository: its first component, if the name has more than one."""
    first, slash, _ = repository.partition("/")
    return first if slash else None


def check_repository_pattern(pattern: str) -> str:
    """A repository name, or ``ns/*`` for every repository of a namespace."""
    if pattern.endswith("/*"):
        check_account_name(pattern[:-2])
        return pattern
    if not is_repository_name(pattern):
        raise InvalidName(f"{pattern!r} is not a repository name (or NAMESPACE/*)")
    return pattern


def pattern_matches(pattern: str, repository: str) -> bool:
    if pattern.endswith("/*"):
        return repository.startswith(pattern[:-1])
    return pattern == repository
