"""The webhook routes of the administration API (superusers only); what they do is :mod:`cargohold.webhooks.manage`.

Routes::

    GET    /admin/v1/webhooks                        every endpoint (configured and run-time)
    POST   /admin/v1/webhooks {name, url, ...}       add one (the keys of notifications.endpoints)
    DELETE /admin/v1/webhooks/{name}                 remove a run-time endpoint
    POST   /admin/v1/webhooks/{name}/test            send a test event now: what the receiver answered
    GET    /admin/v1/webhooks/deliveries?endpoint=E&state=pending|delivered|dead&limit=N&before=ID
    POST   /admin/v1/webhooks/deliveries/{id}/redeliver
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ..http import Request
from ..webhooks.manage import WebhookAdmin, WebhookInvalid

if TYPE_CHECKING:
    from .admin_endpoints import AdminApi, Caller, Handler


def webhook_admin(api: AdminApi, caller: Caller) -> WebhookAdmin:
    """What manages webhooks, for a superuser (DENIED for anyone else)."""
    caller.require(caller.superuser)
    assert api.webhooks is not None  # the routes are there only with it
    return api.webhooks


def _number(request: Request, name: str) -> int | None:
    text = request.query(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise WebhookInvalid(f"{name}: cannot use {text!r} (must be an integer)") from None


async def list_webhooks(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    return await webhook_admin(api, caller).endpoint_list()


async def add_webhook(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    admin = webhook_admin(api, caller)
    return await admin.add(await api.body(request))


async def remove_webhook(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    await webhook_admin(api, caller).remove(params["webhook"])
    return None


async def test_webhook(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    return await webhook_admin(api, caller).test(params["webhook"])


async def list_deliveries(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    admin = webhook_admin(api, caller)
    limit = _number(request, "limit")
    return await admin.deliveries(request.query("endpoint") or None, request.query("state") or None,
                                  100 if limit is None else limit, _number(request, "before"))


async def redeliver(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    return await webhook_admin(api, caller).redeliver(int(params["delivery"]))


_WEBHOOK = r"(?P<webhook>[^/]+)"
#: (method, path pattern under the admin prefix, handler); the deliveries' paths come before ``{name}``'s
ROUTES: Final[list[tuple[str, str, Handler]]] = [
    ("GET", "/webhooks/deliveries", list_deliveries),
    ("POST", r"/webhooks/deliveries/(?P<delivery>\d+)/redeliver", redeliver),
    ("GET", "/webhooks", list_webhooks),
    ("POST", "/webhooks", add_webhook),
    ("DELETE", f"/webhooks/{_WEBHOOK}", remove_webhook),
    ("POST", f"/webhooks/{_WEBHOOK}/test", test_webhook),
]
