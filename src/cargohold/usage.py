"""Usage figures per repository and per namespace, as of their last refresh.

What counts: each distinct blob the manifests of a repository (namespace) reference, once, and the
manifests' own bytes. *Exclusive* bytes are referenced by no other repository (for a namespace: by no
repository outside it; a repository of one component is a holder of its own): what deleting it
would free once garbage collection has run. *Shared* bytes are the rest of the total. A manifest's
bytes are stored with its repository, so they are always exclusive. Blobs linked to a repository
but referenced by none of its manifests (a push in progress, or one that failed; garbage collection
removes them after its grace period) are not in the total: ``unreferenced_bytes`` shows them apart.

A job refreshes the figures (every :data:`REFRESH_INTERVAL_SECONDS`) and so does
``cargohold usage --refresh`` or ``POST /admin/v1/usage``; each figure says when it was computed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final

#: seconds between two refreshes by the job
REFRESH_INTERVAL_SECONDS: Final = 900.0


@dataclass(frozen=True, slots=True)
class Usage:
    #: a repository's name, or a namespace's
    name: str
    #: the repository's namespace (None: a repository of one component, or a namespace's own figures)
    namespace: str | None
    total_bytes: int
    exclusive_bytes: int
    shared_bytes: int
    manifest_bytes: int
    unreferenced_bytes: int
    manifests: int
    tags: int
    last_push_at: int | None
    last_pull_at: int | None
    computed_at: int
    #: a namespace's repositories (None for a repository)
    repositories: int | None = None

    def to_json(self) -> dict[str, Any]:
        figures = asdict(self)
        for key in ("name", "namespace", "repositories"):
            del figures[key]
        if self.repositories is None:
            return {"repository": self.name, "namespace": self.namespace, **figures}
        return {"namespace": self.name, "repositories": self.repositories, **figures}


@dataclass(frozen=True, slots=True)
class UsageReport:
    #: when the figures were computed (None: never)
    computed_at: int | None
    namespaces: list[Usage]
    repositories: list[Usage]

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "computed_at": self.computed_at,
            "age_seconds": None if self.computed_at is None else max(0, int(now) - self.computed_at),
            "namespaces": [usage.to_json() for usage in self.namespaces],
            "repositories": [usage.to_json() for usage in self.repositories],
        }
