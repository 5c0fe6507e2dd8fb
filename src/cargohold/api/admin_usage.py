"""The usage figures' and namespace quotas' routes of the administration API (:mod:`cargohold.usage`,
:mod:`cargohold.quotas`).

Superusers read every figure and quota and set quotas; the owners of a namespace (the user itself,
an organization's ``owners`` team) read the figures and the quota of their namespace (``name`` must then
be the namespace or one of its repositories), as Harbor's project administrators see their project's
quota but cannot raise it. Each quota change is one unit of work with its audit entry (action ``admin``,
change ``quota.set`` or ``quota.clear``).

Routes::

    GET    /admin/v1/usage?name=NAMESPACE|REPOSITORY     the figures as of the last refresh
    POST   /admin/v1/usage?name=...                      refresh them now (superusers), then the same
    GET    /admin/v1/quotas                              the quotas the caller may read
    PUT    /admin/v1/quotas/{namespace} {limit}          set or change one (bytes, or "50GiB")
    DELETE /admin/v1/quotas/{namespace}                  lift one
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

from ..access_model import namespace_of
from ..auth.login import audit
from ..http import Request
from ..quotas import Quota, QuotaInvalid, check_namespace

if TYPE_CHECKING:
    from .admin_endpoints import AdminApi, Caller, Handler


def _reads(caller: Caller, name: str | None) -> bool:
    if caller.superuser:
        return True
    namespace = None if name is None else (namespace_of(name) or name)
    return namespace is not None and caller.view.owns_namespace(namespace)


async def _report(api: AdminApi, caller: Caller, request: Request, refresh: bool) -> Any:
    name = request.query("name") or None
    caller.require(caller.superuser if refresh else _reads(caller, name))
    if refresh:
        await api.store.refresh_usage()
    return (await api.store.usage_report(name)).to_json(time.time())


async def get_usage(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    return await _report(api, caller, request, refresh=False)


async def refresh_usage(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    return await _report(api, caller, request, refresh=True)


async def list_quotas(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    return [quota.to_json() for quota in await api.store.quotas() if _reads(caller, quota.namespace)]


async def set_quota(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    caller.require(caller.superuser)
    check_namespace(params["namespace"])
    body = await api.body(request)
    if "limit" not in body:
        raise QuotaInvalid("limit is required (bytes, or a size such as 50GiB)")
    return (await apply_quota(api, caller, params["namespace"], body["limit"])).to_json()


async def clear_quota(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    await lift_quota(api, caller, params["namespace"])
    return None


async def apply_quota(api: AdminApi, caller: Caller, namespace: str, limit: Any) -> Quota:
    """Set or change a namespace's quota (``limit``: bytes, or a size such as ``50GiB``), for a superuser."""
    from .admin_endpoints import record  # (that module imports this one)

    caller.require(caller.superuser)
    namespace = check_namespace(namespace)
    async with api.store.transaction() as tx:
        quota = await tx.set_quota(namespace, limit, caller.account.name)
        await record(tx, caller, "quota.set", f"{namespace}/*", namespace=namespace, limit=quota.limit_bytes)
    audit("quota_set", namespace=namespace, limit=quota.limit_bytes, by=caller.account.name)
    return quota


async def lift_quota(api: AdminApi, caller: Caller, namespace: str) -> None:
    """Lift a namespace's quota, for a superuser."""
    from .admin_endpoints import record  # (that module imports this one)

    caller.require(caller.superuser)
    namespace = check_namespace(namespace)
    async with api.store.transaction() as tx:
        await tx.clear_quota(namespace)
        await record(tx, caller, "quota.clear", f"{namespace}/*", namespace=namespace)
    audit("quota_cleared", namespace=namespace, by=caller.account.name)


#: (method, path pattern under the admin prefix, handler)
ROUTES: Final[list[tuple[str, str, Handler]]] = [
    ("GET", "/usage", get_usage),
    ("POST", "/usage", refresh_usage),
    ("GET", "/quotas", list_quotas),
    ("PUT", r"/quotas/(?P<namespace>[^/]{1,64})", set_quota),
    ("DELETE", r"/quotas/(?P<namespace>[^/]{1,64})", clear_quota),
]
