"""The route table: name, path pattern and a handler per method, matched in table order.

Patterns match whole paths. A route's ``marker``, a literal every matching
path contains, lets :meth:`Router.match` skip most patterns with a substring
test, which keeps the hot paths' lookup cheap however long the table grows.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..errcodes import RegistryError
from .errors import error_response
from .response import Response

H = TypeVar("H")


@dataclass(frozen=True, slots=True)
class Route(Generic[H]):
    name: str
    pattern: re.Pattern[str]
    template: str
    methods: dict[str, H]
    #: text every matching path contains: a substring test skips most patterns cheaply
    marker: str
    #: whether the access controller decides; if not, the route needs no credentials or checks its own
    guarded: bool = True
    #: how a failure on this route is answered: through the one writer, with what else the route adds
    on_error: Callable[[RegistryError], Response] = error_response


def route(
    name: str, pattern: str | re.Pattern[str], methods: dict[str, H], *, template: str = "", marker: str = "",
    guarded: bool = True, on_error: Callable[[RegistryError], Response] = error_response,
) -> Route[H]:
    """A route for ``pattern``, a regular expression matched against the whole path."""
    compiled = re.compile(pattern)
    return Route(name, compiled, template or compiled.pattern, methods, marker, guarded, on_error)


class Router(Generic[H]):
    """Every route the server answers, in one table."""

    __slots__ = ("routes",)

    def __init__(self, routes: Iterable[Route[H]]) -> None:
        self.routes = list(routes)

    def match(self, path: str) -> tuple[Route[H], dict[str, str]] | None:
        """The first route (in table order) whose pattern matches ``path``, with its parameters."""
        for candidate in self.routes:
            if candidate.marker not in path:
                continue
            found = candidate.pattern.fullmatch(path)
            if found is not None:
                return candidate, found.groupdict()
        return None
