"""An event: one change (or, where configured, one read), who made it and from where, with a stable id.

The id is made once, when the event is: the audit log, every webhook delivery
and every retry of one carry the same id, so a receiver drops duplicates by it.
``seq`` (given by the database) orders events; the id does not.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .origin import Origin, current_origin


def event_ids(count: int) -> list[str]:
    """``count`` new event ids: UUIDs of version 7 (RFC 9562), the time in milliseconds then 74 random
    bits, from one read of the system's randomness. Ids made later sort later, so the log's index of
    them grows at its end (random ids cost more than half of writing a pull's entry)."""
    stamp = int(time.time() * 1000).to_bytes(6, "big").hex()
    raw = bytearray(os.urandom(10 * count))
    ids = []
    for start in range(0, 10 * count, 10):
        raw[start] = (raw[start] & 0x0F) | 0x70
        raw[start + 2] = (raw[start + 2] & 0x3F) | 0x80
        tail = raw[start:start + 10].hex()
        ids.append(f"{stamp[:8]}-{stamp[8:]}-{tail[:4]}-{tail[4:8]}-{tail[8:]}")
    return ids


class Action(StrEnum):
    """What happened, ``noun.verb``; the noun says what the target is."""

    MANIFEST_PUSH = "manifest.push"
    MANIFEST_PULL = "manifest.pull"
    MANIFEST_DELETE = "manifest.delete"
    TAG_DELETE = "tag.delete"
    BLOB_PUSH = "blob.push"
    BLOB_PULL = "blob.pull"
    BLOB_MOUNT = "blob.mount"
    BLOB_DELETE = "blob.delete"
    REPOSITORY_CREATE = "repository.create"
    LOGIN = "login"
    TOKEN_ISSUE = "token.issue"
    #: a change of the access model (users, robots, grants, visibility, webhooks): ``detail`` says which
    ADMIN = "admin"

    @property
    def is_read(self) -> bool:
        return self in (Action.MANIFEST_PULL, Action.BLOB_PULL)


class Result(StrEnum):
    OK = "ok"
    #: refused: bad credentials, no permission
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class Event:
    action: Action
    repository: str = ""
    tag: str | None = None
    digest: str | None = None
    media_type: str | None = None
    size: int | None = None
    result: Result = Result.OK
    #: what else the action says: a push's ``tags`` and a moved tag's ``previous`` digest, an admin change's
    #: ``change`` and its arguments (never a secret)
    detail: Mapping[str, Any] = field(default_factory=dict)
    actor: str | None = None
    actor_kind: str = "anonymous"
    address: str = ""
    user_agent: str = ""
    request_id: str = ""
    host: str = ""
    method: str = ""
    id: str = field(default_factory=lambda: event_ids(1)[0])
    at: float = field(default_factory=time.time)

    @classmethod
    def now(cls, action: Action, origin: Origin | None = None, **target: Any) -> Event:
        """An event of ``action`` on ``target`` by ``origin`` (the current one unless given), made now.

        A field named in ``target`` wins over the origin's (a login names the account it tried).
        """
        who = origin if origin is not None else current_origin()
        fields: dict[str, Any] = {
            "actor": who.actor, "actor_kind": who.actor_kind, "address": who.address, "user_agent": who.user_agent,
            "request_id": who.request_id, "host": who.host, "method": who.method,
        }
        fields.update(target)
        return cls(action=action, **fields)
