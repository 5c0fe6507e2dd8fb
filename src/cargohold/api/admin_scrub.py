"""The scrub's route of the administration API (superusers only); ``cargohold scrub`` prints the same.

Route::

    GET /admin/v1/scrub?runs=N    {"findings": [...], "runs": [...]}: every open finding (a blob whose
                                  bytes did not match its digest or size, or were missing, when last
                                  checked), first found first, and the last N runs (default 10), newest first
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ..events.audit import page_size
from ..http import Request

if TYPE_CHECKING:
    from .admin_endpoints import AdminApi, Caller, Handler

RUNS_SHOWN: Final = 10
RUNS_MAX: Final = 1000


async def scrub_report(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    caller.require(caller.superuser)
    assert api.scrub is not None  # the route is there only with it
    limit = page_size(request.query("runs"), RUNS_SHOWN, RUNS_MAX)
    return {"findings": [finding.to_json() for finding in await api.scrub.scrub_findings()],
            "runs": [run.to_json() for run in await api.scrub.scrub_runs(limit)]}


#: (method, path pattern under the admin prefix, handler)
ROUTES: Final[list[tuple[str, str, Handler]]] = [("GET", "/scrub", scrub_report)]
