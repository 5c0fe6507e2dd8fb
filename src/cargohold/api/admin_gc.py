"""Garbage collection's routes of the administration API (:mod:`cargohold.service.gc`), for superusers.

Routes::

    GET  /admin/v1/gc?n=N                            the last N runs, newest first (default 20, at most 1000)
    POST /admin/v1/gc {dry_run, repository}          run a collection now (``repository``: a glob) -> its report
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ..events.audit import page_size
from ..http import Request
from ..service.gc import HISTORY, GcReport, run_json

if TYPE_CHECKING:
    from .admin_endpoints import AdminApi, Caller, Handler

MAX_HISTORY: Final = 1000


async def list_runs(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    return {"runs": await runs(api, caller, page_size(request.query("n"), HISTORY, MAX_HISTORY))}


async def run_gc(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    from .admin_endpoints import BadRequest  # (that module imports this one)

    caller.require(caller.superuser)  # before the body is read
    body = await api.body(request)
    dry_run, repository = body.get("dry_run", False), body.get("repository")
    if not isinstance(dry_run, bool) or not (repository is None or isinstance(repository, str) and repository):
        raise BadRequest("dry_run must be true or false, repository a glob such as team/*")
    return (await collect(api, caller, dry_run, repository)).to_json()


async def collect(api: AdminApi, caller: Caller, dry_run: bool, repository: str | None) -> GcReport:
    """Run a collection now, for a superuser (``repository``: a glob, or None for every repository)."""
    caller.require(caller.superuser)
    assert api.collector is not None  # the routes are there only with it
    return await api.collector.run(dry_run=dry_run, repository=repository)


async def runs(api: AdminApi, caller: Caller, limit: int) -> list[dict[str, Any]]:
    """The last ``limit`` runs, newest first, for a superuser."""
    caller.require(caller.superuser)
    assert api.collector is not None
    return [run_json(run) for run in await api.collector.history(limit)]


#: (method, path pattern under the admin prefix, handler)
ROUTES: Final[list[tuple[str, str, Handler]]] = [("GET", "/gc", list_runs), ("POST", "/gc", run_gc)]
