"""``metrics.listen``: a process of its own serving only ``GET /metrics``, without credentials.

``serve`` starts it (``python -m cargohold.metrics.listener``) before granian starts the workers and stops it
when it stops; it is a one-worker granian server over :class:`MetricsApp`, and ends with the serve process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Awaitable, Callable

from ..config import ServerConfig
from ..errcodes import RegistryError
from ..http import Receive, Request, Scope, Send, error_response
from ..http.errors import method_not_allowed, not_found
from .endpoint import PATH, Backlog, MetricsEndpoint

#: how long the listener gets to stop before it is killed
_STOP_SECONDS = 5.0


class MetricsApp:
    """The ASGI application of the listener: /metrics, and the registry's error envelope for the rest."""

    def __init__(self, endpoint: MetricsEndpoint, close: Callable[[], Awaitable[None]]) -> None:
        self.endpoint = endpoint
        #: at shutdown: the database the backlog is counted in
        self.close = close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        request = Request(scope, receive, {})
        if request.path != PATH:
            response = not_found(request.path)
        else:
            try:
                if request.method not in ("GET", "HEAD"):
                    raise method_not_allowed(request.method, "metrics", ("GET", "HEAD"))
                response = await self.endpoint.get(request)
            except RegistryError as error:
                response = error_response(error)
        await response.send(send, scope, request.method == "HEAD")


def app_from_environment() -> MetricsApp:
    """Granian's factory target in the listener's worker."""
    from ..api.server import CONFIG_ENV
    from ..metadata import open_metadata_store
    from .directory import ENV

    config = ServerConfig.from_json(os.environ[CONFIG_ENV])
    meta = open_metadata_store(config.metadata_url)
    return MetricsApp(MetricsEndpoint(os.environ[ENV], None, Backlog(meta), None), meta.close)


def start() -> subprocess.Popen[bytes]:
    """The listener process; the configuration and the metrics directory go in the environment (set them first)."""
    return subprocess.Popen([sys.executable, "-m", __name__])


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main() -> None:
    from granian import Granian
    from granian.constants import Interfaces

    from ..api.server import CONFIG_ENV, term_with_parent

    term_with_parent()  # granian then stops its worker
    config = ServerConfig.from_json(os.environ[CONFIG_ENV])
    Granian(
        f"{__name__}:app_from_environment", address=config.metrics.host, port=config.metrics.port,
        interface=Interfaces.ASGI, factory=True, workers=1, log_level=config.server.log_level,  # type: ignore[arg-type]
        log_access=False,
    ).serve()


if __name__ == "__main__":
    main()
