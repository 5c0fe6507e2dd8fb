"""Mirror jobs and their runs (migration ``0020_mirrors.sql``), and what checks a job before it is stored.

A job copies one repository (``source``: ``REGISTRY/REPOSITORY``) to ``destination`` + ``/`` + the source's
repository path, as a pull-through cache names what it caches: ``source`` ``127.0.0.1:5001/library/app``
with ``destination`` ``mirror`` fills ``mirror/library/app`` in this registry. ``local`` as a registry
names this one, so a job can also copy out of it (``source`` ``local/team/app``, ``destination``
``backup.example:5000/team-copy``). One end of a job is always this registry.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol

from ..formats import Platform
from ..reference import is_repository_name
from .tagfilter import TagFilter, TagFilterError

#: the registry name a job gives this registry
LOCAL: Final = "local"
#: shortest interval between two scheduled runs of a job
MIN_INTERVAL_SECONDS: Final = 1.0
#: longest interval (a year): a job that should not run on its own is removed, or run by hand
MAX_INTERVAL_SECONDS: Final = 365 * 86400.0
#: runs kept per job (the newest)
RUNS_KEPT: Final = 100
_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_REGISTRY: Final = re.compile(r"^(local|[A-Za-z0-9.-]+(:[0-9]+)?|\[[0-9a-fA-F:]+\](:[0-9]+)?)$")


class MirrorError(Exception):
    """A job that cannot be stored as given; the message says why."""


class MirrorUnknown(Exception):
    """No job of that name."""


class MirrorExists(Exception):
    """A job of that name is already there."""


class MirrorBusy(Exception):
    """The job is running now (in this process or another)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One end of a job: a registry (``local``: this one) and a repository path in it."""

    registry: str
    path: str

    @property
    def local(self) -> bool:
        return self.registry == LOCAL

    def __str__(self) -> str:
        return f"{self.registry}/{self.path}" if self.path else self.registry


def split_endpoint(value: str, what: str, *, prefix_only: bool) -> Endpoint:
    """``REGISTRY/PATH`` (``local/...`` for this registry); a bare path is in this registry. A destination
    is a prefix (``prefix_only``: it may be a registry alone); a source is a repository."""
    first, _, rest = value.partition("/")
    if _REGISTRY.match(first) and ("." in first or ":" in first or first in (LOCAL, "localhost")):
        registry, path = first, rest
    else:  # docker's rule: a first component without "." or ":" is a path, here in this registry
        registry, path = LOCAL, value
    if path and not is_repository_name(path):
        raise MirrorError(f"{what} {value!r}: {path!r} is not a repository name")
    if not path and not prefix_only:
        raise MirrorError(f"{what} {value!r} names no repository")
    return Endpoint(registry, path)


@dataclass(frozen=True, slots=True)
class MirrorJob:
    name: str
    source: str
    destination: str
    #: a regular expression (full match) or a semver range (:mod:`.tagfilter`); "" copies every tag
    tags: str = ""
    interval_seconds: float = 3600.0
    #: ``os/arch[/variant]``; empty: every platform
    platforms: tuple[str, ...] = ()
    #: copy the referrers (signatures, SBOMs...) of every manifest copied
    with_referrers: bool = False
    #: copy a tag only when a signature refers to its manifest
    only_signed: bool = False
    #: delete tags of the destination that are gone from the source (else they stay)
    prune: bool = False
    username: str | None = None
    password_file: str | None = None
    docker_config: str | None = None
    #: the remote end's certificate is not checked (and it may answer plain HTTP)
    insecure: bool = False
    created_at: float = 0.0
    next_run_at: float = 0.0
    failures: int = 0

    @property
    def source_end(self) -> Endpoint:
        return split_endpoint(self.source, "source", prefix_only=False)

    @property
    def destination_end(self) -> Endpoint:
        return split_endpoint(self.destination, "destination", prefix_only=True)

    @property
    def tag_filter(self) -> TagFilter:
        return TagFilter.parse(self.tags)

    @property
    def target_path(self) -> str:
        """The repository the copies go to: the destination prefix, then the source's repository path."""
        prefix = self.destination_end.path
        return f"{prefix}/{self.source_end.path}" if prefix else self.source_end.path

    @property
    def platform_filter(self) -> list[Platform]:
        from ..client.image import parse_platform  # the client stays out of the metadata store's imports

        return [parse_platform(p) for p in self.platforms]

    def checked(self) -> MirrorJob:
        """This job, or MirrorError naming what is wrong with it."""
        if not _NAME.match(self.name):
            raise MirrorError(f"job name {self.name!r}: lower-case letters, digits, '.', '_' and '-', at most 64")
        source, destination = self.source_end, self.destination_end
        if source.local == destination.local:
            raise MirrorError("one end of a job is this registry (local/...) and the other a remote registry")
        if not is_repository_name(self.target_path):
            raise MirrorError(f"the copies would go to {self.target_path!r}, not a repository name")
        try:
            self.tag_filter  # noqa: B018 - parsed for its errors
        except TagFilterError as exc:
            raise MirrorError(f"tags {self.tags!r}: {exc}") from None
        try:
            self.platform_filter  # noqa: B018
        except ValueError as exc:
            raise MirrorError(f"platforms: {exc}") from None
        if not MIN_INTERVAL_SECONDS <= self.interval_seconds <= MAX_INTERVAL_SECONDS:
            raise MirrorError(f"interval must be between {MIN_INTERVAL_SECONDS:g} s and a year")
        if self.password_file and not self.username:
            raise MirrorError("password_file needs a username")
        if self.username and not self.password_file:
            raise MirrorError("username needs a password_file (the password is never stored)")
        if self.username and self.docker_config:
            raise MirrorError("give username + password_file or docker_config, not both")
        return self

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "destination": self.destination, "tags": self.tags,
                "interval_seconds": self.interval_seconds, "platforms": list(self.platforms),
                "with_referrers": self.with_referrers, "only_signed": self.only_signed, "prune": self.prune,
                "username": self.username, "password_file": self.password_file,
                "docker_config": self.docker_config, "insecure": self.insecure, "created_at": self.created_at,
                "next_run_at": self.next_run_at, "failures": self.failures}

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> MirrorJob:
        """A job from a request body or the command's options; MirrorError when a field has the wrong type."""
        fields: dict[str, Any] = {}
        kinds: dict[str, tuple[type, ...]] = {
            "name": (str,), "source": (str,), "destination": (str,), "tags": (str,),
            "interval_seconds": (int, float), "with_referrers": (bool,), "only_signed": (bool,), "prune": (bool,),
            "username": (str, type(None)), "password_file": (str, type(None)),
            "docker_config": (str, type(None)), "insecure": (bool,),
        }
        unknown = set(document) - set(kinds) - {"platforms", "interval"}
        if unknown:
            raise MirrorError(f"unknown field {sorted(unknown)[0]!r}")
        for key, types in kinds.items():
            if key in document:
                value = document[key]
                if not isinstance(value, types) or (bool in types) != isinstance(value, bool):
                    raise MirrorError(f"{key} has the wrong type")
                fields[key] = value
        if "interval" in document:
            fields["interval_seconds"] = parse_interval(document["interval"])
        platforms = document.get("platforms", [])
        if not isinstance(platforms, list) or not all(isinstance(p, str) for p in platforms):
            raise MirrorError("platforms must be a list of os/arch strings")
        for key in ("name", "source", "destination"):
            if key not in fields:
                raise MirrorError(f"{key} is required")
        return cls(platforms=tuple(platforms), **fields).checked()


def parse_interval(value: Any) -> float:
    """``90``, ``"90s"``, ``"15m"``, ``"6h"``, ``"1d"`` as seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value) if isinstance(value, str) else None
    if match is None:
        raise MirrorError(f"interval {value!r}: a number of seconds, or like 90s, 15m, 6h, 1d")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


@dataclass(frozen=True, slots=True)
class MirrorRun:
    job: str
    started_by: str
    started_at: float
    finished_at: float | None = None
    #: tag -> digest written
    copied: dict[str, str] = field(default_factory=dict)
    #: tag -> why it was not copied (outside the filter, unsigned, already there)
    skipped: dict[str, str] = field(default_factory=dict)
    #: tag -> error; "" for an error of the whole run (the source unreachable...)
    errors: dict[str, str] = field(default_factory=dict)
    #: tags deleted from the destination because the source no longer has them (``prune``)
    pruned: tuple[str, ...] = ()
    id: int = 0

    @property
    def failed(self) -> bool:
        return bool(self.errors)

    def finished(self, at: float) -> MirrorRun:
        return replace(self, finished_at=at)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "job": self.job, "started_by": self.started_by, "started_at": self.started_at,
                "finished_at": self.finished_at, "copied": self.copied, "skipped": self.skipped,
                "errors": self.errors, "pruned": list(self.pruned)}

    def columns(self) -> tuple[Any, ...]:
        return (self.job, self.started_by, self.started_at, self.finished_at, json.dumps(self.copied),
                json.dumps(self.skipped), json.dumps(self.errors), json.dumps(list(self.pruned)))


class MirrorRecords(Protocol):
    """The jobs and runs in the metadata database (:mod:`cargohold.metadata.sql_mirrors`)."""

    async def add_mirror(self, job: MirrorJob) -> None:
        """Store a new job; MirrorExists when the name is taken."""
        ...

    async def mirror(self, name: str) -> MirrorJob | None: ...
    async def mirrors(self) -> list[MirrorJob]:
        """Every job, by name."""
        ...

    async def remove_mirror(self, name: str) -> bool:
        """Delete a job and its runs; False when there was none."""
        ...

    async def due_mirrors(self, now: float) -> list[MirrorJob]:
        """The jobs whose next run is due at ``now``, the longest overdue first."""
        ...

    async def start_mirror_run(self, run: MirrorRun) -> MirrorRun:
        """Record a run that started (with its id); MirrorUnknown when the job is gone."""
        ...

    async def finish_mirror_run(self, run: MirrorRun, next_run_at: float, failures: int) -> None:
        """Record what a run did, and when the job runs next (nothing when the job is gone meanwhile)."""
        ...

    async def mirror_runs(self, name: str, limit: int) -> list[MirrorRun]:
        """The job's last ``limit`` runs, newest first."""
        ...

