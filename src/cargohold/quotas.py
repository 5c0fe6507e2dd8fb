"""Namespace quotas: a byte limit on what the manifests of a namespace's repositories reference.

A namespace is the first component of a repository name (:func:`~.access_model.namespace_of`):
``acme/app`` and ``acme/tools/cli`` are in ``acme``; a repository of one component is in none, and
no quota covers it. A namespace uses the bytes of each distinct blob a manifest in one of its
repositories references (once, however many manifests and repositories reference it) and the bytes
of its manifests. Blobs uploaded but referenced by no manifest (a push in progress, or one that
failed) never count; deleting a manifest frees what only it referenced at once, before garbage
collection deletes any byte.

A manifest push that would add more bytes than the quota has room for is DENIED (403), with a
message naming the quota, its limit, the bytes used and the bytes needed; a push that adds nothing
(the same image again, a new tag) always passes, even over a lowered limit.

Exception tree (answered by the admin API as the access model's are)::

    AccessModelError
    ├── QuotaInvalid   a namespace or limit the grammar refuses
    └── QuotaUnknown   the namespace has no quota
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from .access_model import AccessModelError, check_account_name
from .sizes import human_size, parse_size

#: the largest limit a BIGINT column holds
MAX_LIMIT: Final = 2**63 - 1


class QuotaInvalid(AccessModelError):
    """A quota's namespace or limit is invalid."""


class QuotaUnknown(AccessModelError):
    """The namespace has no quota."""


@dataclass(frozen=True, slots=True)
class Quota:
    namespace: str
    limit_bytes: int
    #: the bytes the namespace's manifests reference now (kept exact by every push and delete)
    used_bytes: int
    created_by: str | None
    updated_at: int

    def __str__(self) -> str:
        return f"quota of namespace {self.namespace} ({human_size(self.limit_bytes)})"

    def to_json(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "limit_bytes": self.limit_bytes, "used_bytes": self.used_bytes,
                "created_by": self.created_by, "updated_at": self.updated_at}


@dataclass(frozen=True, slots=True)
class QuotaCharge:
    """What a push would add to a namespace with a quota, read under the quota row's lock."""

    quota: Quota
    needed: int

    @property
    def fits(self) -> bool:
        return self.needed == 0 or self.quota.used_bytes + self.needed <= self.quota.limit_bytes


def check_namespace(namespace: str) -> str:
    try:
        return check_account_name(namespace)
    except AccessModelError:
        raise QuotaInvalid(f"{namespace!r} is not a namespace (the first component of repository names)") from None


def parse_limit(limit: object) -> int:
    """A limit in bytes from a number of bytes or a size (``50GiB``, ``500M``: binary multiples)."""
    if isinstance(limit, bool) or not isinstance(limit, int | str):
        raise QuotaInvalid("the limit is a number of bytes or a size such as 50GiB")
    try:
        value = limit if isinstance(limit, int) else parse_size(limit)
    except ValueError as exc:
        raise QuotaInvalid(str(exc)) from None
    if not 0 < value <= MAX_LIMIT:
        raise QuotaInvalid(f"the limit must be between 1 and {MAX_LIMIT} bytes")
    return value


def namespace_range(namespace: str) -> tuple[str, str]:
    """Repository names in the namespace are those in [low, high): ``ns/`` up to ``ns0`` ('0' follows '/')."""
    return f"{namespace}/", f"{namespace}0"
