"""The mirror routes of the administration API (superusers only); what they do is :mod:`cargohold.mirror`.

Routes::

    GET    /admin/v1/mirrors                         every job, by name
    POST   /admin/v1/mirrors {name, source, destination, tags, interval, platforms, with_referrers,
                              only_signed, prune, username, password_file, docker_config, insecure}
                                                     add one (201, the job as stored)
    GET    /admin/v1/mirrors/{name}                  one job
    DELETE /admin/v1/mirrors/{name}                  remove it and its runs
    POST   /admin/v1/mirrors/{name}/run              run it now, here; the run (409 MIRROR_BUSY when it runs)
    GET    /admin/v1/mirrors/{name}/runs?n=N         its last N runs, newest first (default 20, at most 100)

Credentials are never in a job: ``password_file`` and ``docker_config`` name files on the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ..events.audit import page_size
from ..http import Request, Response
from ..http.errors import code_response
from ..mirror.model import RUNS_KEPT, MirrorBusy, MirrorError, MirrorExists, MirrorJob, MirrorRun, MirrorUnknown
from ..mirror.service import Mirrors

if TYPE_CHECKING:
    from .admin_endpoints import AdminApi, Caller, Handler

RUNS_SHOWN: Final = 20


def mirrors_of(api: AdminApi, caller: Caller) -> Mirrors:
    """The mirror jobs, for a superuser (DENIED for anyone else)."""
    caller.require(caller.superuser)
    assert api.mirrors is not None  # the routes are there only with it
    return api.mirrors


def _unknown(name: str) -> Response:
    return code_response("MIRROR_UNKNOWN", f"no mirror job {name!r}")


async def list_jobs(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    return {"mirrors": [job.to_json() for job in await mirrors_of(api, caller).store.mirrors()]}


async def add_job(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    mirrors = mirrors_of(api, caller)
    try:
        job = await mirrors.add(MirrorJob.from_json(await api.body(request)))
    except MirrorError as exc:
        return code_response("MIRROR_INVALID", str(exc))
    except MirrorExists as exc:
        return code_response("MIRROR_EXISTS", f"a mirror job {str(exc)!r} exists already")
    return Response.json(job.to_json(), status=201)


async def show_job(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    job = await mirrors_of(api, caller).store.mirror(params["mirror"])
    return _unknown(params["mirror"]) if job is None else job.to_json()


async def remove_job(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    if not await mirrors_of(api, caller).store.remove_mirror(params["mirror"]):
        return _unknown(params["mirror"])
    return None


async def run_job(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    try:
        return (await run_now(api, caller, params["mirror"], "api")).to_json()
    except (MirrorUnknown, MirrorBusy) as exc:
        return code_response(*run_refusal(exc, params["mirror"]))


async def run_now(api: AdminApi, caller: Caller, name: str, started_by: str) -> MirrorRun:
    """Run a job now, here, for a superuser; MirrorUnknown, or MirrorBusy when it runs."""
    return await mirrors_of(api, caller).run(name, started_by)


def run_refusal(exc: MirrorUnknown | MirrorBusy, name: str) -> tuple[str, str]:
    """A refused run's error code and message."""
    if isinstance(exc, MirrorBusy):
        return "MIRROR_BUSY", f"mirror job {name!r} is running now"
    return "MIRROR_UNKNOWN", f"no mirror job {name!r}"


async def list_runs(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    mirrors = mirrors_of(api, caller)
    if await mirrors.store.mirror(params["mirror"]) is None:
        return _unknown(params["mirror"])
    limit = page_size(request.query("n"), RUNS_SHOWN, RUNS_KEPT)
    return {"runs": [run.to_json() for run in await mirrors.store.mirror_runs(params["mirror"], limit)]}


_MIRROR = r"(?P<mirror>[^/]+)"
#: (method, path pattern under the admin prefix, handler)
ROUTES: Final[list[tuple[str, str, Handler]]] = [
    ("GET", "/mirrors", list_jobs),
    ("POST", "/mirrors", add_job),
    ("GET", f"/mirrors/{_MIRROR}", show_job),
    ("DELETE", f"/mirrors/{_MIRROR}", remove_job),
    ("POST", f"/mirrors/{_MIRROR}/run", run_job),
    ("GET", f"/mirrors/{_MIRROR}/runs", list_runs),
]
