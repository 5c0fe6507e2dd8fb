"""``/healthz`` and ``/readyz``: for load balancers and supervisors, answered without credentials.

healthz answers while the process serves. readyz also asks the registry's checks (the database, the blob
store, the job leases; each result reused for a moment, see :mod:`cargohold.service.readiness`), and
answers 503 once the server is draining: on SIGTERM the server process tells its workers (SIGUSR1,
see :mod:`cargohold.cli.serve`) and keeps accepting for ``shutdown_delay_seconds``, so that a load
balancer polling readyz stops sending requests before the port closes.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Final

from ..http import Request, Response

if TYPE_CHECKING:
    from ..service import RegistryService as Registry

#: the signal the server process sends its workers when it starts draining
DRAIN_SIGNAL: Final = signal.SIGUSR1


class _Lifecycle:
    draining = False


lifecycle: Final = _Lifecycle()


def watch_for_drain() -> None:
    """In a worker process, from its main thread: note the drain signal (whose default would end it)."""

    def start_draining(signum: int, frame: object) -> None:
        lifecycle.draining = True

    signal.signal(DRAIN_SIGNAL, start_draining)


async def get_healthz(registry: Registry, request: Request) -> Response:
    return Response.json({"status": "ok"})


async def get_readyz(registry: Registry, request: Request) -> Response:
    failed: dict[str, str] = {}
    if lifecycle.draining:
        failed["shutdown"] = "draining: the server is stopping"
    failed.update(await registry.failed_checks())
    if failed:
        return Response.json({"status": "unavailable", "failed": failed}, status=503)
    return Response.json({"status": "ok"})
