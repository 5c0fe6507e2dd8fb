"""The registry API's routes (``/v2/``, ``/healthz``, ``/readyz``) as data: name, path pattern, a handler per method.

The table drives the dispatcher and :func:`url_for` (``Location`` and ``Link``
headers). Repository names span several path segments, so routes with a fixed
suffix come before the ones they would otherwise swallow. The token and admin
endpoints add theirs to the same :class:`~cargohold.http.Router`, after these.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from ..http import routing
from ..http.response import Response
from .request import RegistryRequest

if TYPE_CHECKING:
    from ..service import RegistryService

#: a /v2/ handler: the registry and the request
Handler = Callable[["RegistryService", RegistryRequest], Awaitable[Response]]
#: what a route calls: a handler with its registry bound, or a token or admin endpoint
Endpoint = Callable[[RegistryRequest], Awaitable[Response]]
Route = routing.Route[Endpoint]


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


def build_routes(handlers: dict[str, dict[str, Handler]], registry: RegistryService) -> list[Route]:
    """The table with each handler bound to ``registry``."""
    return [
        routing.route(
            name, re.compile(pattern, re.DOTALL),
            {method: functools.partial(handler, registry) for method, handler in handlers[name].items()},
            template=template, marker=marker, guarded=name not in PUBLIC,
        )
        for name, pattern, template, marker in _PATTERNS
    ]


def url_for(route: str, **params: str) -> str:
    return _TEMPLATES[route].format(**params)
