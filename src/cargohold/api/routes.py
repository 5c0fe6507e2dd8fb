"""The API's routes as data: name, path pattern, and a handler per method.

The table drives the dispatcher and :func:`url_for` (``Location`` and ``Link``
headers). Repository names span several path segments, so routes with a fixed
suffix come before the ones they would otherwise swallow.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ..service import Registry
    from .asgi import Request, Response

Handler = Callable[["Registry", "Request"], Awaitable["Response"]]


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    pattern: re.Pattern[str]
    template: str
    methods: dict[str, Handler]
    #: text every matching path contains: a substring test skips most patterns cheaply
    marker: str


BASE: Final = "base"
CATALOG: Final = "catalog"
TAGS: Final = "tags"
MANIFEST: Final = "manifest"
BLOB: Final = "blob"
UPLOADS: Final = "uploads"
UPLOAD: Final = "upload"
REFERRERS: Final = "referrers"
HEALTHZ: Final = "healthz"
READYZ: Final = "readyz"
#: routes for load balancers and supervisors: answered without credentials, whatever the access control
PUBLIC: Final = frozenset({HEALTHZ, READYZ})

# (name, pattern, template, marker: a literal part of the pattern that every match contains)
_PATTERNS: Final[list[tuple[str, str, str, str]]] = [
    (BASE, r"/v2/?", "/v2/", "/v2"),
    (CATALOG, r"/v2/_catalog", "/v2/_catalog", "/v2/_catalog"),
    (TAGS, r"/v2/(?P<name>.+)/tags/list", "/v2/{name}/tags/list", "/tags/list"),
    (MANIFEST, r"/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)", "/v2/{name}/manifests/{reference}",
     "/manifests/"),
    (UPLOAD, r"/v2/(?P<name>.+)/blobs/uploads/(?P<uuid>[^/]+)", "/v2/{name}/blobs/uploads/{uuid}",
     "/blobs/uploads/"),
    (UPLOADS, r"/v2/(?P<name>.+)/blobs/uploads/?", "/v2/{name}/blobs/uploads/", "/blobs/uploads"),
    (BLOB, r"/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)", "/v2/{name}/blobs/{digest}", "/blobs/"),
    (REFERRERS, r"/v2/(?P<name>.+)/referrers/(?P<digest>[^/]+)", "/v2/{name}/referrers/{digest}", "/referrers/"),
    (HEALTHZ, r"/healthz", "/healthz", "/healthz"),
    (READYZ, r"/readyz", "/readyz", "/readyz"),
]
_TEMPLATES: Final = {name: template for name, _, template, _ in _PATTERNS}


def build_routes(handlers: dict[str, dict[str, Handler]]) -> list[Route]:
    return [
        Route(name, re.compile(pattern, re.DOTALL), template, handlers[name], marker)
        for name, pattern, template, marker in _PATTERNS
    ]


def match(routes: list[Route], path: str) -> tuple[Route, dict[str, str]] | None:
    """The first route (in table order) whose pattern matches ``path``, with its parameters."""
    for route in routes:
        if route.marker not in path:
            continue
        found = route.pattern.fullmatch(path)
        if found is not None:
            return route, found.groupdict()
    return None


def url_for(route: str, **params: str) -> str:
    return _TEMPLATES[route].format(**params)
