"""Who is asking: the request being served, or the admin CLI, as the events of its changes record it.

The HTTP layer sets the origin once per request (after authorization); the
service and the stores read it when they record an event, so no service method
carries it as a parameter. Setting it costs one context variable write: the
request object itself is the origin, read only when an event is made.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Final, Protocol


class Origin(Protocol):
    @property
    def actor(self) -> str | None:
        """The account name (a robot's is ``owner+name``); None: anonymous."""
        ...

    @property
    def actor_kind(self) -> str:
        """``user``, ``robot``, ``anonymous``, ``admin-cli`` or ``system`` (a job)."""
        ...

    @property
    def address(self) -> str:
        """The client's address (no port); empty when not over the network."""
        ...

    @property
    def user_agent(self) -> str: ...

    @property
    def request_id(self) -> str: ...

    @property
    def host(self) -> str:
        """The Host the client addressed."""
        ...

    @property
    def method(self) -> str: ...


@dataclass(frozen=True, slots=True)
class FixedOrigin:
    actor: str | None = None
    actor_kind: str = "anonymous"
    address: str = ""
    user_agent: str = ""
    request_id: str = ""
    host: str = ""
    method: str = ""


#: changes made outside any request (a job; a test calling the service)
NOBODY: Final = FixedOrigin(actor_kind="system")
#: changes made with ``cargohold admin ...`` on the server's machine
ADMIN_CLI: Final = FixedOrigin(actor_kind="admin-cli")

_current: ContextVar[Origin] = ContextVar("cargohold_origin", default=NOBODY)


def current_origin() -> Origin:
    return _current.get()


def set_origin(origin: Origin) -> None:
    """For the rest of this task (one request): the origin of its events."""
    _current.set(origin)


@contextmanager
def origin_scope(origin: Origin) -> Iterator[None]:
    token = _current.set(origin)
    try:
        yield
    finally:
        _current.reset(token)
