"""The administration API: JSON over HTTP under ``/admin/v1``, for the web UI and scripts.

Callers authenticate with basic credentials (rate-limited like every login)
or a bearer token from cargohold's own token service; robots may not
administer. What each caller may do:

- superusers: everything;
- a user: change its own password; create organizations (becoming an owner);
- owners of a namespace (the user itself, an organization's ``owners``):
  its robots, its teams, grants and visibility of its repositories;
- admins of a repository: its grants and visibility.

Routes (``{repo}`` may be ``ns/*`` for grants)::

    GET    /admin/v1/whoami
    GET    /admin/v1/users                          POST /admin/v1/users {name, password, superuser}
    PATCH  /admin/v1/users/{name} {password, disabled, superuser}    DELETE /admin/v1/users/{name}
    GET    /admin/v1/robots?owner=NS                POST /admin/v1/robots {owner, name} -> {token}
    POST   /admin/v1/robots/{name}/rotate -> {token}                 DELETE /admin/v1/robots/{name}
    GET    /admin/v1/organizations                  POST /admin/v1/organizations {name, owners}
    DELETE /admin/v1/organizations/{org}
    GET    /admin/v1/organizations/{org}/teams      POST /admin/v1/organizations/{org}/teams {name}
    DELETE /admin/v1/organizations/{org}/teams/{team}
    GET    /admin/v1/organizations/{org}/teams/{team}/members
    PUT | DELETE /admin/v1/organizations/{org}/teams/{team}/members/{account}
    GET    /admin/v1/repositories/{repo}/permissions (who can what)
    PUT    /admin/v1/repositories/{repo}/permissions {grantee, role}
    DELETE /admin/v1/repositories/{repo}/permissions?grantee=G
    PUT    /admin/v1/repositories/{repo}/visibility {public}
    GET    /admin/v1/audit (superusers; repository admins for their repositories; see admin_audit.py)
    ...    /admin/v1/immutable-tags (superusers; namespace owners for their namespace; see admin_immutable.py)
    ...    /admin/v1/usage, /admin/v1/quotas (superusers; namespace owners read theirs; see admin_usage.py)
    ...    /admin/v1/webhooks (superusers; see admin_webhooks.py)
    GET    /admin/v1/scrub (superusers; see admin_scrub.py)
    GET    /admin/v1/gc, POST /admin/v1/gc {dry_run, repository} (superusers; see admin_gc.py)
    ...    /admin/v1/mirrors (superusers; see admin_mirrors.py)

Secrets travel only in bodies (never in the URL, which the access log records).
Errors use the registry's envelope, with the access model's error names as codes
(their statuses: ``errcodes.OTHER_STATUSES``). These routes sit in the API's one
route table: an unknown path or method is answered there, before the caller is
authenticated, as under ``/v2/``.

Each change runs in one unit of work of the access store (``store.transaction()``):
its checks and writes commit together or not at all. Passwords are hashed before
it opens, so it never waits on anything but the store.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from .. import jsontext
from ..access_model import (
    AccessModelError,
    Account,
    AccountKind,
    AccountUnknown,
    Role,
    split_robot_name,
)
from ..auth.jwt import TokenInvalid, Verifier
from ..auth.login import Authenticator, audit, parse_basic, token_account
from ..auth.passwords import ROBOT_TOKEN_PREFIX, generate_secret, hash_password, secret_digest
from ..auth.policy import AccessView, load_view, who_can
from ..errcodes import Denied, Unauthorized
from ..events import Action, Event
from ..events.audit import AuditLog, BadFilter
from ..events.log import EventLog
from ..http import Request, Response, route
from ..http.errors import code_response
from ..metadata.access import AccessStore
from ..mirror.service import Mirrors
from ..scrub import ScrubRecords
from ..service.gc import Collector
from ..webhooks.manage import WebhookAdmin, WebhookError
from . import admin_audit, admin_gc, admin_immutable, admin_mirrors, admin_scrub, admin_usage, admin_webhooks
from .routes import Endpoint, Route

PREFIX: Final = "/admin/v1"
MAX_BODY: Final = 64 * 1024


def _code(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


def _readable(pattern: str) -> str:
    """``/users/(?P<account>[^/]+)`` as ``/users/{account}``."""
    return re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern)


def account_json(account: Account) -> dict[str, Any]:
    return {"name": account.name, "kind": account.kind.value, "superuser": account.superuser,
            "disabled": account.disabled, "owner": account.owner, "created_at": account.created_at}


class BadRequest(AccessModelError):
    """The body is not the JSON object the route expects (400 BAD_REQUEST)."""


@dataclass
class Caller:
    account: Account
    view: AccessView

    @property
    def superuser(self) -> bool:
        return self.account.superuser

    def require(self, allowed: bool) -> None:
        if not allowed:
            raise Denied("not allowed for this account")


#: the administration's refusals of a change or a query (their codes: :func:`refusal_code`)
REFUSALS: Final = (AccessModelError, WebhookError, BadFilter)


def refusal_code(error: AccessModelError | WebhookError | BadFilter) -> str:
    """The error code of a refusal; ``errcodes.OTHER_STATUSES`` gives its status."""
    if isinstance(error, WebhookError):
        return error.code
    return _code((BadRequest if isinstance(error, BadFilter) else type(error)).__name__)


Handler = Callable[["AdminApi", Caller, dict[str, str], Request], Awaitable[Any]]


class AdminApi:
    """The ``/admin/v1`` endpoints."""

    def __init__(
        self, store: AccessStore, login: Authenticator, verifier: Verifier, issuer: str,
        audit_log: AuditLog | None = None, webhooks: WebhookAdmin | None = None,
        scrub: ScrubRecords | None = None, collector: Collector | None = None, mirrors: Mirrors | None = None,
    ) -> None:
        self.store = store
        self.login = login
        self.verifier = verifier
        self.issuer = issuer
        self.audit_log = audit_log
        self.webhooks = webhooks
        self.scrub = scrub
        self.collector = collector
        self.mirrors = mirrors

    def routes(self) -> list[Route]:
        """One route per path of :data:`ROUTES`, its methods bound to this API."""
        by_path: dict[str, dict[str, Endpoint]] = {}
        for method, path, handler in [
            *ROUTES,
            *admin_immutable.ROUTES,
            *admin_usage.ROUTES,
            *(admin_audit.ROUTES if self.audit_log is not None else []),
            *(admin_webhooks.ROUTES if self.webhooks is not None else []),
            *(admin_scrub.ROUTES if self.scrub is not None else []),
            *(admin_gc.ROUTES if self.collector is not None else []),
            *(admin_mirrors.ROUTES if self.mirrors is not None else []),
        ]:
            by_path.setdefault(path, {})[method] = self._endpoint(handler)
        return [
            route(_readable(f"{PREFIX}{path}"), re.compile(f"{PREFIX}{path}"), methods, marker=PREFIX, guarded=False)
            for path, methods in by_path.items()
        ]

    def _endpoint(self, handler: Handler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                caller = await self._caller(request)
                result = await handler(self, caller, request.params, request)
            except REFUSALS as error:
                return code_response(refusal_code(error), str(error))
            if isinstance(result, Response):
                return result
            return Response(204) if result is None else Response.json(result)

        return endpoint

    async def _caller(self, request: Request) -> Caller:
        challenge = {"WWW-Authenticate": 'Basic realm="cargohold admin"'}
        header = request.headers.get("authorization")
        if header is None:
            raise Unauthorized("authentication required", headers=challenge)
        credentials = parse_basic(header)
        if credentials is not None:
            account = await self.login.login(*credentials, request.client, challenge)
        else:
            scheme, _, token = header.strip().partition(" ")
            try:
                if scheme.lower() != "bearer":
                    raise TokenInvalid("unsupported scheme")
                verified = self.verifier.verify(token.strip())
            except TokenInvalid:
                raise Unauthorized("invalid credentials", headers=challenge) from None
            found = await token_account(self.store, verified) if verified.issuer == self.issuer else None
            if found is None:
                raise Unauthorized("invalid credentials", headers=challenge)
            account = found
        if account.kind is not AccountKind.USER:
            raise Denied("robots cannot administer")
        return Caller(account, await load_view(self.store, account))

    @staticmethod
    async def body(request: Request) -> dict[str, Any]:
        raw = await request.body(MAX_BODY)
        if raw is None:
            raise BadRequest(f"the body is larger than {MAX_BODY} bytes")
        try:
            data = jsontext.loads(raw or b"{}")
        except ValueError:  # UnicodeDecodeError and JSONTooDeep too
            raise BadRequest("the body is not JSON") from None
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object")
        return data

    async def hash(self, password: Any) -> str:
        if not isinstance(password, str):
            raise BadRequest("password must be a string")
        return await asyncio.to_thread(hash_password, password, self.login.password_cost)

    def owner_of_namespace(self, caller: Caller, namespace: str) -> None:
        caller.require(caller.view.owns_namespace(namespace))

    async def admin_of_pattern(self, caller: Caller, pattern: str) -> None:
        if pattern.endswith("/*"):
            self.owner_of_namespace(caller, pattern[:-2])
        else:
            caller.require(await caller.view.administers(pattern))


async def record(tx: EventLog, caller: Caller, change: str, repository: str = "", **args: Any) -> None:
    """The audit entry of a change, in the change's transaction: who, and what (never a secret)."""
    await tx.add_event(Event.now(Action.ADMIN, actor=caller.account.name, actor_kind="user", repository=repository,
                                 detail={"change": change, **args}))


def _str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{key} is required (a string)")
    return value


# users


async def whoami(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    return {**account_json(caller.account), "teams": [t.full_name for t in await api.store.teams_of(caller.account)]}


async def list_users(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    caller.require(caller.superuser)
    return [account_json(a) for a in await api.store.accounts(AccountKind.USER)]


async def add_user(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    caller.require(caller.superuser)
    body = await api.body(request)
    hashed = await api.hash(body.get("password"))
    async with api.store.transaction() as tx:
        account = await tx.create_user(_str(body, "name"), hashed, bool(body.get("superuser", False)))
        await record(tx, caller, "user.add", name=account.name, superuser=account.superuser)
    audit("account_created", account=account.name, by=caller.account.name)
    return account_json(account)


async def change_user(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    name = params["account"]
    body = await api.body(request)
    caller.require(caller.superuser or (name == caller.account.name and set(body) <= {"password"}))
    await api.store.require(name, AccountKind.USER)
    hashed = await api.hash(body["password"]) if "password" in body else None
    async with api.store.transaction() as tx:
        await tx.require(name, AccountKind.USER)
        if hashed is not None:
            await tx.set_secret(name, hashed)
        if "disabled" in body:
            await tx.set_disabled(name, bool(body["disabled"]))
        if "superuser" in body:
            await tx.set_superuser(name, bool(body["superuser"]))
        changed = await tx.require(name)
        flags: dict[str, Any] = {key: bool(body[key]) for key in ("disabled", "superuser") if key in body}
        await record(tx, caller, "user.change", name=name, fields=sorted(body), **flags)
    audit("account_changed", account=name, fields=sorted(body), by=caller.account.name)
    return account_json(changed)


async def delete_user(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    caller.require(caller.superuser)
    async with api.store.transaction() as tx:
        await tx.require(params["account"], AccountKind.USER)
        await tx.delete_account(params["account"])
        await record(tx, caller, "user.delete", name=params["account"])
    audit("account_deleted", account=params["account"], by=caller.account.name)
    return None


# robots


async def list_robots(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    owner = request.query("owner") or caller.account.name
    api.owner_of_namespace(caller, owner)
    return [account_json(a) for a in await api.store.accounts(AccountKind.ROBOT, owner=owner)]


async def add_robot(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    body = await api.body(request)
    owner = body.get("owner") or caller.account.name
    api.owner_of_namespace(caller, owner)
    token = generate_secret(ROBOT_TOKEN_PREFIX)
    async with api.store.transaction() as tx:
        account = await tx.create_robot(owner, _str(body, "name"), secret_digest(token))
        await record(tx, caller, "robot.add", name=account.name)
    audit("robot_created", account=account.name, by=caller.account.name)
    return {**account_json(account), "token": token}


async def rotate_robot(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    owner, _ = split_robot_name(params["account"])
    api.owner_of_namespace(caller, owner)
    token = generate_secret(ROBOT_TOKEN_PREFIX)
    async with api.store.transaction() as tx:
        await tx.require(params["account"], AccountKind.ROBOT)
        await tx.set_secret(params["account"], secret_digest(token))
        await record(tx, caller, "robot.rotate", name=params["account"])
    audit("robot_rotated", account=params["account"], by=caller.account.name)
    return {"name": params["account"], "token": token}


async def delete_robot(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    owner, _ = split_robot_name(params["account"])
    api.owner_of_namespace(caller, owner)
    async with api.store.transaction() as tx:
        await tx.require(params["account"], AccountKind.ROBOT)
        await tx.delete_account(params["account"])
        await record(tx, caller, "robot.delete", name=params["account"])
    return None


# organizations and teams


async def list_organizations(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    organizations = await api.store.accounts(AccountKind.ORGANIZATION)
    return [account_json(a) for a in organizations if caller.view.owns_namespace(a.name)]


async def add_organization(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    body = await api.body(request)
    owners = body.get("owners") or []
    if not isinstance(owners, list) or not all(isinstance(o, str) for o in owners):
        raise BadRequest("owners must be a list of user names")
    if not caller.superuser and caller.account.name not in owners:
        owners = [caller.account.name, *owners]
    async with api.store.transaction() as tx:
        account = await tx.create_organization(_str(body, "name"), owners)
        await record(tx, caller, "org.add", name=account.name, owners=owners)
    audit("organization_created", account=account.name, by=caller.account.name)
    return account_json(account)


async def delete_organization(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    api.owner_of_namespace(caller, params["org"])
    async with api.store.transaction() as tx:
        await tx.require(params["org"], AccountKind.ORGANIZATION)
        await tx.delete_account(params["org"])
        await record(tx, caller, "org.delete", name=params["org"])
    return None


async def list_teams(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    api.owner_of_namespace(caller, params["org"])
    return [{"name": t.name, "members": await api.store.members(t.full_name)}
            for t in await api.store.teams(params["org"])]


async def add_team(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    api.owner_of_namespace(caller, params["org"])
    name = _str(await api.body(request), "name")
    async with api.store.transaction() as tx:
        team = await tx.create_team(params["org"], name)
        await record(tx, caller, "team.add", team=f"{params['org']}/{team.name}")
    return {"name": team.name, "members": []}


async def delete_team(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    api.owner_of_namespace(caller, params["org"])
    async with api.store.transaction() as tx:
        await tx.delete_team(f"{params['org']}/{params['team']}")
        await record(tx, caller, "team.delete", team=f"{params['org']}/{params['team']}")
    return None


async def list_members(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    api.owner_of_namespace(caller, params["org"])
    return await api.store.members(f"{params['org']}/{params['team']}")


async def put_member(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    api.owner_of_namespace(caller, params["org"])
    async with api.store.transaction() as tx:
        await tx.set_member(f"{params['org']}/{params['team']}", params["member"], request.method == "PUT")
        await record(tx, caller, "team.member.add" if request.method == "PUT" else "team.member.remove",
                     team=f"{params['org']}/{params['team']}", member=params["member"])
    return None


# repositories


async def list_permissions(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    await api.admin_of_pattern(caller, params["repo"])
    return [{"who": h.who, "role": str(h.role), "via": h.via} for h in await who_can(api.store, params["repo"])]


async def put_permission(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    await api.admin_of_pattern(caller, params["repo"])
    body = await api.body(request)
    role = Role.parse(_str(body, "role"))
    async with api.store.transaction() as tx:
        await tx.grant(params["repo"], _str(body, "grantee"), role)
        await record(tx, caller, "permission.grant", params["repo"], grantee=body["grantee"], role=str(role))
    audit("permission_granted", repository=params["repo"], grantee=body["grantee"], role=str(role),
          by=caller.account.name)
    return None


async def delete_permission(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    await api.admin_of_pattern(caller, params["repo"])
    grantee = request.query("grantee")
    if not grantee:
        raise BadRequest("grantee is required")
    async with api.store.transaction() as tx:
        revoked = await tx.revoke(params["repo"], grantee)
        if revoked:
            await record(tx, caller, "permission.revoke", params["repo"], grantee=grantee)
    if not revoked:
        raise AccountUnknown(f"{grantee} holds no grant on {params['repo']}")
    audit("permission_revoked", repository=params["repo"], grantee=grantee, by=caller.account.name)
    return None


async def put_visibility(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    await api.admin_of_pattern(caller, params["repo"])
    public = (await api.body(request)).get("public")
    if not isinstance(public, bool):
        raise BadRequest("public must be true or false")
    async with api.store.transaction() as tx:
        await tx.set_public(params["repo"], public)
        await record(tx, caller, "repository.visibility", params["repo"], public=public)
    audit("visibility_changed", repository=params["repo"], public=public, by=caller.account.name)
    return {"repository": params["repo"], "public": public}


_NAME = r"(?P<account>[^/]+)"
_ORG = r"(?P<org>[^/]+)"
_TEAM = r"(?P<team>[^/]+)"
_REPO = r"(?P<repo>.+?)"
#: (method, path pattern under PREFIX, handler)
ROUTES: Final[list[tuple[str, str, Handler]]] = [
    ("GET", "/whoami", whoami),
    ("GET", "/users", list_users),
    ("POST", "/users", add_user),
    ("PATCH", f"/users/{_NAME}", change_user),
    ("DELETE", f"/users/{_NAME}", delete_user),
    ("GET", "/robots", list_robots),
    ("POST", "/robots", add_robot),
    ("POST", f"/robots/{_NAME}/rotate", rotate_robot),
    ("DELETE", f"/robots/{_NAME}", delete_robot),
    ("GET", "/organizations", list_organizations),
    ("POST", "/organizations", add_organization),
    ("DELETE", f"/organizations/{_ORG}", delete_organization),
    ("GET", f"/organizations/{_ORG}/teams", list_teams),
    ("POST", f"/organizations/{_ORG}/teams", add_team),
    ("DELETE", f"/organizations/{_ORG}/teams/{_TEAM}", delete_team),
    ("GET", f"/organizations/{_ORG}/teams/{_TEAM}/members", list_members),
    ("PUT", f"/organizations/{_ORG}/teams/{_TEAM}/members/(?P<member>[^/]+)", put_member),
    ("DELETE", f"/organizations/{_ORG}/teams/{_TEAM}/members/(?P<member>[^/]+)", put_member),
    ("GET", f"/repositories/{_REPO}/permissions", list_permissions),
    ("PUT", f"/repositories/{_REPO}/permissions", put_permission),
    ("DELETE", f"/repositories/{_REPO}/permissions", delete_permission),
    ("PUT", f"/repositories/{_REPO}/visibility", put_visibility),
]
