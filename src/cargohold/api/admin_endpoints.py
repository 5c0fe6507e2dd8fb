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
from ..auth.policy import AccessView, Holder, load_view, who_can
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


#: the failures of a change that are the caller's (an error code and message, never a 500)
ADMIN_ERRORS: Final = (AccessModelError, WebhookError, BadFilter)


def error_code(error: AccessModelError | WebhookError | BadFilter) -> str:
    """The code of one of :data:`ADMIN_ERRORS` (its status: ``errcodes.OTHER_STATUSES``, else 400)."""
    if isinstance(error, WebhookError):
        return error.code
    if isinstance(error, BadFilter):
        return _code(BadRequest.__name__)
    return _code(type(error).__name__)


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
            route(_readable(f"{PREFIX}{path}"), re.compile(f"{PREFIX}{path}"), methods,
                  template=_readable(f"{PREFIX}{path}"), marker=PREFIX, guarded=False)
            for path, methods in by_path.items()
        ]

    def _endpoint(self, handler: Handler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                caller = await self._caller(request)
                result = await handler(self, caller, request.params, request)
            except ADMIN_ERRORS as error:
                return code_response(error_code(error), str(error))
            if isinstance(result, Response):
                return result
            return Response(204) if result is None else Response.json(result)

        return endpoint

    async def caller(self, account: Account) -> Caller:
        """A logged-in user as the caller of a change (a web UI session's user)."""
        if account.kind is not AccountKind.USER:
            raise Denied("robots cannot administer")
        return Caller(account, await load_view(self.store, account))

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
        return await self.caller(account)

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


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{key} is required (a string)")
    return value


# Each change is a plain function of the caller and the values (the web UI's administration pages call
# them too); the handlers below read the request into them.

# users


async def users(api: AdminApi, caller: Caller) -> list[Account]:
    caller.require(caller.superuser)
    return await api.store.accounts(AccountKind.USER)


async def create_user(api: AdminApi, caller: Caller, name: Any, password: Any, superuser: bool) -> Account:
    caller.require(caller.superuser)
    hashed = await api.hash(password)
    async with api.store.transaction() as tx:
        account = await tx.create_user(_text(name, "name"), hashed, superuser)
        await record(tx, caller, "user.add", name=account.name, superuser=account.superuser)
    audit("account_created", account=account.name, by=caller.account.name)
    return account


async def update_user(api: AdminApi, caller: Caller, name: str, changes: dict[str, Any]) -> Account:
    """``changes``: any of ``password``, ``disabled``, ``superuser`` (a user may change its own password)."""
    caller.require(caller.superuser or (name == caller.account.name and set(changes) <= {"password"}))
    await api.store.require(name, AccountKind.USER)
    hashed = await api.hash(changes["password"]) if "password" in changes else None
    async with api.store.transaction() as tx:
        await tx.require(name, AccountKind.USER)
        if hashed is not None:
            await tx.set_secret(name, hashed)
        if "disabled" in changes:
            await tx.set_disabled(name, bool(changes["disabled"]))
        if "superuser" in changes:
            await tx.set_superuser(name, bool(changes["superuser"]))
        changed = await tx.require(name)
        flags: dict[str, Any] = {key: bool(changes[key]) for key in ("disabled", "superuser") if key in changes}
        await record(tx, caller, "user.change", name=name, fields=sorted(changes), **flags)
    audit("account_changed", account=name, fields=sorted(changes), by=caller.account.name)
    return changed


async def remove_user(api: AdminApi, caller: Caller, name: str) -> None:
    caller.require(caller.superuser)
    async with api.store.transaction() as tx:
        await tx.require(name, AccountKind.USER)
        await tx.delete_account(name)
        await record(tx, caller, "user.delete", name=name)
    audit("account_deleted", account=name, by=caller.account.name)


# robots


async def robots(api: AdminApi, caller: Caller, owner: str | None) -> list[Account]:
    """A namespace's robots (``None``: every robot, for superusers)."""
    if owner is None:
        caller.require(caller.superuser)
    else:
        api.owner_of_namespace(caller, owner)
    return await api.store.accounts(AccountKind.ROBOT, owner=owner)


async def create_robot(api: AdminApi, caller: Caller, owner: str, name: Any) -> tuple[Account, str]:
    """The new robot and its token (shown once: only its digest is stored)."""
    api.owner_of_namespace(caller, owner)
    token = generate_secret(ROBOT_TOKEN_PREFIX)
    async with api.store.transaction() as tx:
        account = await tx.create_robot(owner, _text(name, "name"), secret_digest(token))
        await record(tx, caller, "robot.add", name=account.name)
    audit("robot_created", account=account.name, by=caller.account.name)
    return account, token


async def rotate_robot_token(api: AdminApi, caller: Caller, name: str) -> str:
    owner, _ = split_robot_name(name)
    api.owner_of_namespace(caller, owner)
    token = generate_secret(ROBOT_TOKEN_PREFIX)
    async with api.store.transaction() as tx:
        await tx.require(name, AccountKind.ROBOT)
        await tx.set_secret(name, secret_digest(token))
        await record(tx, caller, "robot.rotate", name=name)
    audit("robot_rotated", account=name, by=caller.account.name)
    return token


async def remove_robot(api: AdminApi, caller: Caller, name: str) -> None:
    owner, _ = split_robot_name(name)
    api.owner_of_namespace(caller, owner)
    async with api.store.transaction() as tx:
        await tx.require(name, AccountKind.ROBOT)
        await tx.delete_account(name)
        await record(tx, caller, "robot.delete", name=name)


# organizations and teams


async def organizations(api: AdminApi, caller: Caller) -> list[Account]:
    found = await api.store.accounts(AccountKind.ORGANIZATION)
    return [account for account in found if caller.view.owns_namespace(account.name)]


async def create_organization(api: AdminApi, caller: Caller, name: Any, owners: Any) -> Account:
    """``owners``: user names (the caller is one unless a superuser)."""
    owners = owners or []
    if not isinstance(owners, list) or not all(isinstance(o, str) for o in owners):
        raise BadRequest("owners must be a list of user names")
    if not caller.superuser and caller.account.name not in owners:
        owners = [caller.account.name, *owners]
    async with api.store.transaction() as tx:
        account = await tx.create_organization(_text(name, "name"), owners)
        await record(tx, caller, "org.add", name=account.name, owners=owners)
    audit("organization_created", account=account.name, by=caller.account.name)
    return account


async def remove_organization(api: AdminApi, caller: Caller, org: str) -> None:
    api.owner_of_namespace(caller, org)
    async with api.store.transaction() as tx:
        await tx.require(org, AccountKind.ORGANIZATION)
        await tx.delete_account(org)
        await record(tx, caller, "org.delete", name=org)


async def teams(api: AdminApi, caller: Caller, org: str) -> list[tuple[str, list[str]]]:
    """An organization's teams: (name, members)."""
    api.owner_of_namespace(caller, org)
    return [(t.name, await api.store.members(t.full_name)) for t in await api.store.teams(org)]


async def create_team(api: AdminApi, caller: Caller, org: str, name: Any) -> str:
    api.owner_of_namespace(caller, org)
    async with api.store.transaction() as tx:
        team = await tx.create_team(org, _text(name, "name"))
        await record(tx, caller, "team.add", team=f"{org}/{team.name}")
    return team.name


async def remove_team(api: AdminApi, caller: Caller, org: str, team: str) -> None:
    api.owner_of_namespace(caller, org)
    async with api.store.transaction() as tx:
        await tx.delete_team(f"{org}/{team}")
        await record(tx, caller, "team.delete", team=f"{org}/{team}")


async def team_members(api: AdminApi, caller: Caller, org: str, team: str) -> list[str]:
    api.owner_of_namespace(caller, org)
    return await api.store.members(f"{org}/{team}")


async def set_team_member(api: AdminApi, caller: Caller, org: str, team: str, member: str, present: bool) -> None:
    api.owner_of_namespace(caller, org)
    async with api.store.transaction() as tx:
        await tx.set_member(f"{org}/{team}", member, present)
        await record(tx, caller, "team.member.add" if present else "team.member.remove",
                     team=f"{org}/{team}", member=member)


# repositories


async def permissions(api: AdminApi, caller: Caller, repository: str) -> list[Holder]:
    """Who can what on ``repository`` (or ``ns/*``), highest role first."""
    await api.admin_of_pattern(caller, repository)
    return await who_can(api.store, repository)


async def grant_role(api: AdminApi, caller: Caller, repository: str, grantee: Any, role: Any) -> Role:
    await api.admin_of_pattern(caller, repository)
    parsed = Role.parse(_text(role, "role"))
    grantee = _text(grantee, "grantee")
    async with api.store.transaction() as tx:
        await tx.grant(repository, grantee, parsed)
        await record(tx, caller, "permission.grant", repository, grantee=grantee, role=str(parsed))
    audit("permission_granted", repository=repository, grantee=grantee, role=str(parsed), by=caller.account.name)
    return parsed


async def revoke_role(api: AdminApi, caller: Caller, repository: str, grantee: str | None) -> None:
    await api.admin_of_pattern(caller, repository)
    if not grantee:
        raise BadRequest("grantee is required")
    async with api.store.transaction() as tx:
        revoked = await tx.revoke(repository, grantee)
        if revoked:
            await record(tx, caller, "permission.revoke", repository, grantee=grantee)
    if not revoked:
        raise AccountUnknown(f"{grantee} holds no grant on {repository}")
    audit("permission_revoked", repository=repository, grantee=grantee, by=caller.account.name)


async def set_visibility(api: AdminApi, caller: Caller, repository: str, public: Any) -> None:
    await api.admin_of_pattern(caller, repository)
    if not isinstance(public, bool):
        raise BadRequest("public must be true or false")
    async with api.store.transaction() as tx:
        await tx.set_public(repository, public)
        await record(tx, caller, "repository.visibility", repository, public=public)
    audit("visibility_changed", repository=repository, public=public, by=caller.account.name)


# the handlers


async def whoami(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    return {**account_json(caller.account), "teams": [t.full_name for t in await api.store.teams_of(caller.account)]}


async def list_users(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    return [account_json(a) for a in await users(api, caller)]


async def add_user(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    caller.require(caller.superuser)  # before the body is read
    body = await api.body(request)
    return account_json(await create_user(api, caller, body.get("name"), body.get("password"),
                                          bool(body.get("superuser", False))))


async def change_user(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    return account_json(await update_user(api, caller, params["account"], await api.body(request)))


async def delete_user(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    await remove_user(api, caller, params["account"])


async def list_robots(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    return [account_json(a) for a in await robots(api, caller, request.query("owner") or caller.account.name)]


async def add_robot(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    body = await api.body(request)
    account, token = await create_robot(api, caller, body.get("owner") or caller.account.name, body.get("name"))
    return {**account_json(account), "token": token}


async def rotate_robot(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    return {"name": params["account"], "token": await rotate_robot_token(api, caller, params["account"])}


async def delete_robot(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    await remove_robot(api, caller, params["account"])


async def list_organizations(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    return [account_json(a) for a in await organizations(api, caller)]


async def add_organization(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    body = await api.body(request)
    return account_json(await create_organization(api, caller, body.get("name"), body.get("owners")))


async def delete_organization(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    await remove_organization(api, caller, params["org"])


async def list_teams(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    return [{"name": name, "members": members} for name, members in await teams(api, caller, params["org"])]


async def add_team(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    api.owner_of_namespace(caller, params["org"])  # before the body is read
    name = await create_team(api, caller, params["org"], (await api.body(request)).get("name"))
    return {"name": name, "members": []}


async def delete_team(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    await remove_team(api, caller, params["org"], params["team"])


async def list_members(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    return await team_members(api, caller, params["org"], params["team"])


async def put_member(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    await set_team_member(api, caller, params["org"], params["team"], params["member"], request.method == "PUT")


async def list_permissions(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    return [{"who": h.who, "role": str(h.role), "via": h.via} for h in await permissions(api, caller, params["repo"])]


async def put_permission(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    await api.admin_of_pattern(caller, params["repo"])  # before the body is read
    body = await api.body(request)
    await grant_role(api, caller, params["repo"], body.get("grantee"), body.get("role"))


async def delete_permission(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    await revoke_role(api, caller, params["repo"], request.query("grantee"))


async def put_visibility(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    await api.admin_of_pattern(caller, params["repo"])  # before the body is read
    public = (await api.body(request)).get("public")
    await set_visibility(api, caller, params["repo"], public)
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
