"""Reading the audit log: the filter both readers take (``cargohold audit``, ``GET /admin/v1/audit``),
an entry as they show it, and what the metadata database answers them with."""

from __future__ import annotations

import datetime
import re
import time
from dataclasses import dataclass
from typing import Any, Final, Protocol

from .model import Event

#: ``30s``, ``15m``, ``1h``, ``7d``, ``2w``: that long before now
_RELATIVE: Final = re.compile(r"([0-9]{1,9})([smhdw])")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class BadFilter(ValueError):
    """A filter value that is not one (a time neither ISO 8601 nor relative, a bad page size)."""


def parse_time(text: str, now: float | None = None) -> float:
    """``2026-12-01T10:00:00Z`` (a time without a zone is UTC, a bare date its midnight) or ``1h``, ``7d``
    (that long before ``now``): seconds since the epoch."""
    value = text.strip()
    relative = _RELATIVE.fullmatch(value)
    if relative is not None:
        return (time.time() if now is None else now) - int(relative[1]) * _UNIT_SECONDS[relative[2]]
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadFilter(f"not a time: {text[:40]!r} (ISO 8601, or relative like 30m, 1h, 7d)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which entries a reader wants; every given condition must hold."""

    #: a glob on the repository name (``team/*``: a namespace)
    repository: str | None = None
    actor: str | None = None
    #: an action (``manifest.push``), or its noun for all of them (``manifest``)
    action: str | None = None
    #: seconds since the epoch: at or after ``since``, before ``until``
    since: float | None = None
    until: float | None = None
    #: None: every entry; else only entries of repositories matching one of these (a name, or ``ns/*``):
    #: what a repository administrator may read
    scope: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    #: its place in the log: later entries have larger numbers (the ``before`` cursor of a page)
    seq: int
    event: Event


def entry_json(entry: LoggedEvent) -> dict[str, Any]:
    """An entry with stable field names, as ``--json`` and the admin API write it."""
    event = entry.event
    return {
        "seq": entry.seq,
        "id": event.id,
        "time": datetime.datetime.fromtimestamp(event.at, datetime.UTC).isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "action": str(event.action),
        "result": str(event.result),
        "actor": event.actor,
        "actor_kind": event.actor_kind,
        "address": event.address,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
        "repository": event.repository,
        "tag": event.tag,
        "digest": event.digest,
        "media_type": event.media_type,
        "size": event.size,
        "detail": dict(event.detail),
    }


class AuditLog(Protocol):
    """What the readers and the retention job ask of the metadata database."""

    async def list_events(self, where: EventFilter, limit: int, before: int | None = None) -> list[LoggedEvent]:
        """Up to ``limit`` entries matching ``where``, newest first, older than the entry ``before`` (a seq)."""
        ...

    async def purge_events(self, older_than: float) -> int:
        """Delete the entries made before ``older_than`` (seconds since the epoch), except those with a
        webhook delivery not yet done (pending, or dead and still redeliverable); how many went."""
        ...


def page_size(text: str | None, default: int, most: int) -> int:
    """A page size given as text: a whole number, at most ``most``."""
    if text is None or text == "":
        return default
    if not re.fullmatch(r"[0-9]{1,9}", text):
        raise BadFilter(f"a page size must be a whole number, not {text[:20]!r}")
    return min(int(text), most)


def cursor(text: str | None) -> int | None:
    if text is None or text == "":
        return None
    if not re.fullmatch(r"[0-9]{1,18}", text):
        raise BadFilter(f"a page cursor must be an entry's seq, not {text[:20]!r}")
    return int(text)
