"""The administration pages of accounts and access: users, organizations and their teams, robots, who may
do what on a repository (and whether it is public), and the audit log.

Each change calls the administration API's function for it (:mod:`cargohold.api.admin_endpoints`), with the
session's user as the caller: the same checks, the same audit entries. Names travel in query strings and
form fields (a robot's ``+``, a repository's slashes); a robot's token only in the answer to the POST that
made it, never in a URL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import urlencode

from ..access_model import AccountKind, AccountUnknown, TeamUnknown
from ..api import admin_audit
from ..api import admin_endpoints as rules
from ..api.admin_endpoints import AdminApi, Caller
from ..api.request import RegistryRequest
from ..errcodes import Denied
from ..events.audit import entry_json
from ..http import Response
from .pages import ADMIN_SECTIONS, PAGE_SIZE, PREFIX, PageTable, WebUi, _query, admin_caller, refusals_as_pages
from .render import page, redirect
from .viewer import Viewer

ADMIN: Final = f"{PREFIX}/admin"
#: what the page a change redirects to says about it (``?done=KEY&name=NAME``)
DONE: Final = {
    "user.add": "Created the user {name}.",
    "user.disable": "Disabled {name}: its sessions and tokens no longer work.",
    "user.enable": "Enabled {name}.",
    "user.password": "Set the password of {name}.",
    "user.delete": "Deleted the user {name}.",
    "org.add": "Created the organization {name}.",
    "org.delete": "Deleted the organization {name}.",
    "team.add": "Created the team {name}.",
    "team.delete": "Deleted the team {name}.",
    "member.add": "Added the member to {name}.",
    "member.remove": "Removed the member from {name}.",
    "robot.delete": "Deleted the robot {name}.",
    "grant": "Granted the role on {name}.",
    "revoke": "Revoked the grant on {name}.",
    "public": "{name} is public: anyone may pull it.",
    "private": "{name} is private.",
}
ROLES: Final = ("read", "write", "admin")

Handler = Callable[[RegistryRequest], Awaitable[Response]]


def _done(request: RegistryRequest) -> str:
    template = DONE.get(_query(request, "done"))
    return template.format(name=_query(request, "name")) if template else ""


def _back_to(path: str, done: str, name: str, **more: str) -> Response:
    return redirect(f"{path}?" + urlencode({**more, "done": done, "name": name}))


class AccountPages:
    def __init__(self, ui: WebUi) -> None:
        self.ui = ui

    def table(self) -> PageTable:
        pages: PageTable = [
            ("ui-admin-users", rf"{ADMIN}/users", {"GET": self.users, "POST": self.add_user}),
            ("ui-admin-user-change", rf"{ADMIN}/users/change", {"POST": self.change_user}),
            ("ui-admin-user-delete", rf"{ADMIN}/users/delete", {"GET": self.confirm_user_delete,
                                                                 "POST": self.delete_user}),
            ("ui-admin-organizations", rf"{ADMIN}/organizations", {"GET": self.organizations,
                                                                    "POST": self.add_organization}),
            ("ui-admin-organization-delete", rf"{ADMIN}/organizations/delete",
             {"GET": self.confirm_organization_delete, "POST": self.delete_organization}),
            ("ui-admin-teams", rf"{ADMIN}/teams", {"POST": self.add_team}),
            ("ui-admin-team-delete", rf"{ADMIN}/teams/delete", {"GET": self.confirm_team_delete,
                                                                 "POST": self.delete_team}),
            ("ui-admin-team-members", rf"{ADMIN}/teams/members", {"POST": self.change_member}),
            ("ui-admin-robots", rf"{ADMIN}/robots", {"GET": self.robots, "POST": self.add_robot}),
            ("ui-admin-robot-rotate", rf"{ADMIN}/robots/rotate", {"GET": self.confirm_rotate,
                                                                   "POST": self.rotate_robot}),
            ("ui-admin-robot-delete", rf"{ADMIN}/robots/delete", {"GET": self.confirm_robot_delete,
                                                                   "POST": self.delete_robot}),
            ("ui-admin-permissions", rf"{ADMIN}/permissions", {"GET": self.permissions,
                                                                "POST": self.change_permissions}),
            ("ui-admin-revoke", rf"{ADMIN}/permissions/revoke", {"GET": self.confirm_revoke, "POST": self.revoke}),
            ("ui-admin-audit", rf"{ADMIN}/audit", {"GET": self.audit}),
        ]
        return [(name, pattern, {method: refusals_as_pages(handler) for method, handler in methods.items()})
                for name, pattern, methods in pages]

    # who is asking

    async def _reader(self, request: RegistryRequest) -> tuple[Viewer, Caller, AdminApi]:
        viewer = await self.ui._administrator(request)
        return viewer, *await self._as_caller(viewer)

    async def _changer(self, request: RegistryRequest) -> tuple[Viewer, Caller, AdminApi, dict[str, str]]:
        viewer, form = await self.ui._posted(request)
        if not viewer.admin or self.ui.admin is None:
            raise Denied("the administration pages are for superusers")
        caller, api = await self._as_caller(viewer)
        return viewer, caller, api, form

    async def _as_caller(self, viewer: Viewer) -> tuple[Caller, AdminApi]:
        api = self.ui.admin
        assert api is not None and viewer.account is not None  # _administrator saw to both
        return admin_caller(viewer), api

    def _confirm(self, viewer: Viewer, title: str, text: str, action: str, fields: dict[str, str], button: str,
                 cancel: str) -> Response:
        return page("admin_confirm.html", viewer=viewer, title=title, text=text, action=action,
                    fields=fields, button=button, back=cancel)

    # users

    async def users(self, request: RegistryRequest) -> Response:
        viewer, caller, api = await self._reader(request)
        return page("admin_accounts_users.html", viewer=viewer, rows=await rules.users(api, caller),
                    done=_done(request))

    async def add_user(self, request: RegistryRequest) -> Response:
        viewer, caller, api, form = await self._changer(request)
        account = await rules.create_user(api, caller, form.get("name", ""), form.get("password", ""),
                                          form.get("superuser") == "on")
        return _back_to(f"{ADMIN}/users", "user.add", account.name)

    async def change_user(self, request: RegistryRequest) -> Response:
        viewer, caller, api, form = await self._changer(request)
        name, action = form.get("name", ""), form.get("action", "")
        by_action: dict[str, dict[str, Any]] = {"disable": {"disabled": True}, "enable": {"disabled": False},
                                                "password": {"password": form.get("password", "")}}
        changes = by_action.get(action, {})
        if not changes:
            raise rules.BadRequest("action must be disable, enable or password")
        account = await rules.update_user(api, caller, name, changes)
        return _back_to(f"{ADMIN}/users", f"user.{action}", account.name)

    async def confirm_user_delete(self, request: RegistryRequest) -> Response:
        viewer, caller, api = await self._reader(request)
        name = _query(request, "name")
        account = await api.store.require(name, AccountKind.USER)
        return self._confirm(viewer, f"Delete the user {account.name}?",
                             "The user goes, with its robots, its grants and its team memberships.",
                             f"{ADMIN}/users/delete", {"name": account.name}, "Delete", f"{ADMIN}/users")

    async def delete_user(self, request: RegistryRequest) -> Response:
        viewer, caller, api, form = await self._changer(request)
        await rules.remove_user(api, caller, form.get("name", ""))
        return _back_to(f"{ADMIN}/users", "user.delete", form.get("name", ""))

    # organizations and teams

    async def organizations(self, request: RegistryRequest) -> Response:
        viewer, caller, api = await self._reader(request)
        rows = [
            {"name": org.name, "created_at": org.created_at, "owners": await api.store.namespace_owners(org.name),
             "teams": await rules.teams(api, caller, org.name)}
            for org in await rules.organizations(api, caller)
        ]
        return page("admin_accounts_organizations.html", viewer=viewer, rows=rows, done=_done(request))

    async def add_organization(self, request: RegistryRequest) -> Response:
        viewer, caller, api, form = await self._changer(request)
        owners = [owner.strip() for owner in form.get("owners", "").split(",") if owner.strip()]
        account = await rules.create_organization(api, caller, form.get("name", ""), owners)
        return _back_to(f"{ADMIN}/organizations", "org.add", account.name)

    async def confirm_organization_delete(self, request: RegistryRequest) -> Response:
        viewer, caller, api = await self._reader(request)
        account = await api.store.require(_query(request, "name"), AccountKind.ORGANIZATION)
        return self._confirm(viewer, f"Delete the organization {account.name}?",
                             "The organization goes, with its teams, its robots and their grants.",
                             f"{ADMIN}/organizations/delete", {"name": account.name}, "Delete",
                             f"{ADMIN}/organizations")

    async def delete_organization(self, request: RegistryRequest) -> Response:
        viewer, caller, api, form = await self._changer(request)
        await rules.remove_organization(api, caller, form.get("name", ""))
        return _back_to(f"{ADMIN}/organizations", "org.delete", form.get("name", ""))

    async def add_team(self, request: RegistryRequest) -> Response:
        viewer, caller, api, form = await self._changer(request)
        org = form.get("org", "")
        team = await rules.create_team(api, caller, org, form.get("name", ""))
        return _back_to(f"{ADMIN}/organizations", "team.add", f"{org}/{team}")

    async def confirm_team_delete(self, request: RegistryRequest) -> Response:
        viewer, caller, api = await self._reader(request)
        org, team = _query(request, "org"), _query(request, "team")
        if team not in [name for name, _ in await rules.teams(api, caller, org)]:
            raise TeamUnknown(f"no team {org}/{team}")
        return self._confirm(viewer, f"Delete the team {org}/{team}?",
                             "The team goes, with its grants; its members stay.",
                             f"{ADMIN}/teams/delete", {"org": org, "team": team}, "Delete", f"{ADMIN}/organizations")

    async def delete_team(self, request: RegistryRequest) -> Response:
        viewer, caller, api, form = await self._changer(request)
        org, team = form.get("org", ""), form.get("team", "")
        await rules.remove_team(api, caller, org, team)
        return _back_to(f"{ADMIN}/organizations", "team.delete", f"{org}/{team}")

    async def change_member(self, request: RegistryRequest) -> Response:
        viewer, caller, api, form = await self._changer(request)
        org, team, action = form.get("org", ""), form.get("team", ""), form.get("action", "")
        if action not in ("add", "remove"):
            raise rules.BadRequest("action must be add or remove")
        member = form.get("member", "").strip()
        if not member:
            raise rules.BadRequest("member is required (a user or robot name)")
        await rules.set_team_member(api, caller, org, team, member, action == "add")
        return _back_to(f"{ADMIN}/organizations", f"member.{action}", f"{org}/{team}")

    # robots

    async def robots(self, request: RegistryRequest) -> Response:
        viewer, caller, api = await self._reader(request)
        owner = _query(request, "owner")
        return page("admin_accounts_robots.html", viewer=viewer, owner=owner,
                    rows=await rules.robots(api, caller, owner or None), done=_done(request))

    def _token_page(self, viewer: Viewer, name: str, token: str, rotated: bool) -> Response:
        """The token, shown this once (the UI's pages are never cached)."""
        return page("admin_accounts_token.html", viewer=viewer, name=name, token=token, rotated=rotated)

    async def add_robot(self, request: RegistryRequest) -> Response:
        viewer, caller, api, form = await self._changer(request)
        account, token = await rules.create_robot(api, caller, form.get("owner", "").strip(), form.get("name", ""))
        return self._token_page(viewer, account.name, token, rotated=False)

    async def _robot(self, api: AdminApi, name: str) -> str:
        return (await api.store.require(name, AccountKind.ROBOT)).name

    async def confirm_rotate(self, request: RegistryRequest) -> Response:
        viewer, caller, api = await self._reader(request)
        name = await self._robot(api, _query(request, "name"))
        return self._confirm(viewer, f"Rotate the token of {name}?",
                             "A new token replaces the current one, which stops working at once.",
                             f"{ADMIN}/robots/rotate", {"name": name}, "Rotate", f"{ADMIN}/robots")

    async def rotate_robot(self, request: RegistryRequest) -> Response:
        viewer, caller, api, form = await self._changer(request)
        name = form.get("name", "")
        token = await rules.rotate_robot_token(api, caller, name)
        return self._token_page(viewer, name, token, rotated=True)

    async def confirm_robot_delete(self, request: RegistryRequest) -> Response:
        viewer, caller, api = await self._reader(request)
        name = await self._robot(api, _query(request, "name"))
        return self._confirm(viewer, f"Delete the robot {name}?", "The robot goes, with its grants.",
                             f"{ADMIN}/robots/delete", {"name": name}, "Delete", f"{ADMIN}/robots")

    async def delete_robot(self, request: RegistryRequest) -> Response:
        viewer, caller, api, form = await self._changer(request)
        await rules.remove_robot(api, caller, form.get("name", ""))
        return _back_to(f"{ADMIN}/robots", "robot.delete", form.get("name", ""))

    # grants and visibility

    async def permissions(self, request: RegistryRequest) -> Response:
        viewer, caller, api = await self._reader(request)
        repository = _query(request, "repository").strip()
        holders = await rules.permissions(api, caller, repository) if repository else []
        public = await api.store.is_public(repository) if repository and not repository.endswith("/*") else None
        return page("admin_accounts_permissions.html", viewer=viewer, repository=repository, holders=holders,
                    public=public, roles=ROLES, done=_done(request))

    async def change_permissions(self, request: RegistryRequest) -> Response:
        viewer, caller, api, form = await self._changer(request)
        repository, action = form.get("repository", "").strip(), form.get("action", "")
        if not repository:
            raise rules.BadRequest("repository is required (a name, or ns/*)")
        if action == "grant":
            await rules.grant_role(api, caller, repository, form.get("grantee", "").strip(), form.get("role", ""))
        elif action in ("public", "private"):
            await rules.set_visibility(api, caller, repository, action == "public")
        else:
            raise rules.BadRequest("action must be grant, public or private")
        return _back_to(f"{ADMIN}/permissions", action, repository, repository=repository)

    async def confirm_revoke(self, request: RegistryRequest) -> Response:
        viewer, caller, api = await self._reader(request)
        repository, grantee = _query(request, "repository"), _query(request, "grantee")
        if not any(h.who == grantee and h.via == "grant" for h in await rules.permissions(api, caller, repository)):
            raise AccountUnknown(f"{grantee} holds no grant on {repository}")
        return self._confirm(viewer, f"Revoke the grant of {grantee} on {repository}?",
                             "Roles it holds through other grants, teams or ownership stay.",
                             f"{ADMIN}/permissions/revoke", {"repository": repository, "grantee": grantee}, "Revoke",
                             f"{ADMIN}/permissions?" + urlencode({"repository": repository}))

    async def revoke(self, request: RegistryRequest) -> Response:
        viewer, caller, api, form = await self._changer(request)
        repository = form.get("repository", "")
        await rules.revoke_role(api, caller, repository, form.get("grantee", ""))
        return _back_to(f"{ADMIN}/permissions", "revoke", repository, repository=repository)

    # the audit log

    async def audit(self, request: RegistryRequest) -> Response:
        viewer, caller, api = await self._reader(request)
        given = {name: _query(request, name).strip() or None for name in admin_audit.AUDIT_FILTERS}
        size = _query(request, "n") or str(PAGE_SIZE)
        entries, more = await admin_audit.audit_page(api, caller, given, size, _query(request, "last") or None)
        following = {**{k: v for k, v in given.items() if v}, "n": size, "last": entries[-1].seq} \
            if more and entries else None
        return page("admin_accounts_audit.html", viewer=viewer, given={k: v or "" for k, v in given.items()},
                    rows=[entry_json(entry) for entry in entries], following=following)


def account_pages(ui: WebUi) -> PageTable:
    return AccountPages(ui).table()


ADMIN_SECTIONS.append(account_pages)
