"""A request to the API: the kernel's request, and what the access controller granted its caller.

It is also the :class:`~cargohold.events.Origin` of the events its changes record:
who (from the grant) and from where (from the request), read only when an event is made.
"""

from __future__ import annotations

from ..auth.access import NOTHING, AccessController, Grant
from ..http.request import Receive, Request, Scope


class RegistryRequest(Request):
    __slots__ = ("grant", "access")

    def __init__(self, scope: Scope, receive: Receive, params: dict[str, str], access: AccessController):
        super().__init__(scope, receive, params)
        #: nothing until the access controller answers (fail closed): only its grant grants
        self.grant: Grant = NOTHING
        #: the controller, whose filters say which repositories the caller may see and pull
        self.access = access

    # the event origin

    @property
    def actor(self) -> str | None:
        return self.grant.subject

    @property
    def actor_kind(self) -> str:
        subject = self.grant.subject
        if subject is None:
            return "anonymous"
        return "robot" if "+" in subject else "user"

    @property
    def address(self) -> str:
        client = self.scope.get("client")
        return str(client[0]) if client else "-"

    @property
    def user_agent(self) -> str:
        return self.headers.get("user-agent", "")

    @property
    def request_id(self) -> str:
        return self.id

    @property
    def host(self) -> str:
        return self.headers.get("host", "")
