"""An event: one change (or, where configured, one read), who made it and from where, with a stable id.

The id is made once, when the event is: the audit log, every webhook delivery
and every retry of one carry the same id, so a receiver drops duplicates by it.
``seq`` (given by the database) orders events; the id does not.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .origin import Origin, current_origin


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
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
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
