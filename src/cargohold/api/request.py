"""A request to the API: the kernel's request, and what the access controller granted its caller."""

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
