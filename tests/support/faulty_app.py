"""The registry app with failures planted in it, for tests of how unexpected exceptions are answered.

Granian serves it as ``cargohold serve`` serves the real app (the same factory, the same
configuration passed in the environment, the same logging); only the handlers replaced below
differ, and they exist only here, in the tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from cargohold.api import routes
from cargohold.api.app import RegistryApp
from cargohold.api.server import app_from_environment
from cargohold.http import Request, Response, route

#: text that must reach the log and never a client
SECRET = "/srv/cargohold/internal/secret-path"


async def fails(request: Request) -> Response:
    raise RuntimeError(f"planted failure reading {SECRET}")


async def fails_in_endpoint(request: Request) -> Response:
    raise KeyError(SECRET)


async def fails_mid_body(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        yield b"half"
        raise RuntimeError(f"planted failure while sending {SECRET}")

    return Response(200, stream=body(), length=8)


def app() -> RegistryApp:
    registry_app = app_from_environment()
    for planted in registry_app.router.routes:
        if planted.name == routes.CATALOG:
            planted.methods["GET"] = fails
        elif planted.name == routes.TAGS:
            planted.methods["GET"] = fails_mid_body
    # an endpoint outside /v2/ that checks its own credentials, as the token and admin endpoints do
    registry_app.router.routes.append(route("planted", "/planted/.*", {"GET": fails_in_endpoint}, guarded=False))
    return registry_app
