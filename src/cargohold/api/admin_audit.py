"""The audit log's route of the administration API.

Route::

    GET /admin/v1/audit?repository=GLOB&actor=A&action=A&since=T&until=T&n=N&last=SEQ

Superusers read every entry; a repository's admins the entries of the repositories
they administer; anyone else is refused. Pages go newest first, as the catalog's do
(``n``, ``last``, and a ``Link`` header to the next page).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode

from ..events.audit import BadFilter, EventFilter, LoggedEvent, cursor, entry_json, page_size, parse_time
from ..http import Request, Response

if TYPE_CHECKING:
    from .admin_endpoints import AdminApi, Caller, Handler

#: entries per page of ``GET /audit`` unless ``n`` says otherwise, and the most it may say
AUDIT_PAGE: Final = 100
AUDIT_MAX_PAGE: Final = 1000
#: the filters of a page of entries
AUDIT_FILTERS: Final = ("repository", "actor", "action", "since", "until")


async def audit_page(
    api: AdminApi, caller: Caller, given: dict[str, str | None], n: str | None, last: str | None,
) -> tuple[list[LoggedEvent], bool]:
    """A page of entries, newest first, under the filters ``given`` (those of :data:`AUDIT_FILTERS`), after
    the entry ``last`` (a seq); and whether more follow. A filter that is not one raises :class:`BadFilter`."""
    scope = caller.view.administered()
    caller.require(scope is None or bool(scope))  # superusers read it all; repository admins their part
    if api.audit_log is None:
        raise BadFilter("the audit log is off")
    where = EventFilter(
        repository=given.get("repository"), actor=given.get("actor"), action=given.get("action"),
        since=parse_time(since) if (since := given.get("since")) else None,
        until=parse_time(until) if (until := given.get("until")) else None, scope=scope,
    )
    limit = page_size(n, AUDIT_PAGE, AUDIT_MAX_PAGE)
    found = await api.audit_log.list_events(where, limit + 1, cursor(last))
    return found[:limit], len(found) > limit


async def list_audit(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    given = {name: request.query(name) or None for name in AUDIT_FILTERS}
    # a BadFilter is answered 400 BAD_REQUEST by the API
    entries, more = await audit_page(api, caller, given, request.query("n"), request.query("last"))
    response = Response.json({"entries": [entry_json(entry) for entry in entries]})
    if more and entries:
        # the filters as given (times too: a relative ``since`` moves on with the next page, as it reads)
        limit = page_size(request.query("n"), AUDIT_PAGE, AUDIT_MAX_PAGE)
        query = urlencode({**{k: v for k, v in given.items() if v is not None}, "n": limit, "last": entries[-1].seq})
        response.header("link", f'<{request.path}?{query}>; rel="next"')
    return response


#: (method, path pattern under the admin prefix, handler)
ROUTES: Final[list[tuple[str, str, Handler]]] = [("GET", "/audit", list_audit)]
