"""The administration pages of accounts and access, over plain HTTP: users, organizations and teams, robots,
grants and visibility, the audit log; each change as the administration API makes it (same rules, same audit
entries), refused to anyone but a superuser, and bad input answered with the API's error code and status."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page

from tests.api.helpers import sha256
from tests.interop.tools import requires_skopeo
from tests.support.requirements import requires_tool

from .conftest import APP, PASSWORDS, SECRET, UiWorld
from .support import SESSION_COOKIE, browser_login, csrf_of, http_login

pytestmark = [requires_skopeo, requires_tool("chromium")]

#: every page of the group, as a superuser GETs it
PAGES = ["/ui/admin/users", "/ui/admin/organizations", "/ui/admin/robots", "/ui/admin/permissions",
         f"/ui/admin/permissions?repository={APP}", "/ui/admin/audit"]
#: every change of the group (a non-superuser's POST is refused before any is looked at)
CHANGES = ["/ui/admin/users", "/ui/admin/users/change", "/ui/admin/users/delete", "/ui/admin/organizations",
           "/ui/admin/organizations/delete", "/ui/admin/teams", "/ui/admin/teams/delete", "/ui/admin/teams/members",
           "/ui/admin/robots", "/ui/admin/robots/rotate", "/ui/admin/robots/delete", "/ui/admin/permissions",
           "/ui/admin/permissions/revoke"]
CONFIRMATIONS = ["/ui/admin/users/delete?name=bob", "/ui/admin/organizations/delete?name=x",
                 "/ui/admin/teams/delete?org=x&team=y", "/ui/admin/robots/rotate?name=x%2By",
                 "/ui/admin/robots/delete?name=x%2By", f"/ui/admin/permissions/revoke?repository={APP}&grantee=bob"]
TOKEN = re.compile(r'<code class="robot-token">([^<]+)</code>')


def post(client: httpx.Client, path: str, **form: str) -> httpx.Response:
    """A form POST from the admin home page's session (its CSRF token)."""
    csrf = csrf_of(client.get("/ui/admin").text)
    return client.post(path, data={"csrf": csrf, **form})


def shown(client: httpx.Client, response: httpx.Response) -> str:
    """The page a change redirected to (303), its text."""
    assert response.status_code == 303, response.text
    answer = client.get(response.headers["location"])
    assert answer.status_code == 200, answer.text
    return unescape(answer.text)


def admin_changes(world: UiWorld, **query: str) -> list[dict[str, Any]]:
    """The audit log's administration entries, newest first (read through the API)."""
    with world.admin() as admin:
        entries: list[dict[str, Any]] = admin.get("/admin/v1/audit", params={"action": "admin", **query}).json()[
            "entries"]
    return entries


def refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert "text/html" in response.headers["content-type"]
    assert code in response.text


@pytest.mark.parametrize("name", ["alice", "bob"])
def test_the_pages_are_refused_to_other_users(ui_world: UiWorld, name: str) -> None:
    with http_login(ui_world.url, name, PASSWORDS[name]) as client:
        assert "/ui/admin" not in client.get("/ui/repositories").text  # no Administration link
        for path in PAGES + CONFIRMATIONS:
            refused(client.get(path), 403, "DENIED")
        csrf = csrf_of(client.get("/ui/repositories").text)
        for path in CHANGES:
            refused(client.post(path, data={"csrf": csrf, "name": f"{name}-was-here", "owner": name,
                                            "repository": APP, "grantee": name, "role": "admin",
                                            "action": "grant"}), 403, "DENIED")
    with ui_world.admin() as admin:
        names = [account["name"] for account in admin.get("/admin/v1/users").json()]
        assert f"{name}-was-here" not in names
        assert name + "+" + f"{name}-was-here" not in [r["name"] for r in admin.get(
            "/admin/v1/robots", params={"owner": name}).json()]


def test_without_a_session_the_pages_ask_for_a_login(ui_world: UiWorld) -> None:
    with httpx.Client(base_url=ui_world.url) as client:
        for path in PAGES:
            answer = client.get(path)
            assert answer.status_code == 303
            assert answer.headers["location"].startswith("/ui/login?next=")


def test_a_change_without_the_csrf_token_is_refused(ui_world: UiWorld) -> None:
    with http_login(ui_world.url, "root", PASSWORDS["root"]) as client:
        for csrf in ("", "wrong"):
            refused(client.post("/ui/admin/users", data={"csrf": csrf, "name": "mallory", "password": "pw-123456"}),
                    403, "DENIED")
    with ui_world.admin() as admin:
        assert "mallory" not in [account["name"] for account in admin.get("/admin/v1/users").json()]


def test_users_are_created_disabled_enabled_given_a_password_and_deleted(ui_world: UiWorld) -> None:
    with http_login(ui_world.url, "root", PASSWORDS["root"]) as root:
        page = shown(root, post(root, "/ui/admin/users", name="carol", password="carol-password-1", superuser="on"))
        assert "Created the user carol." in page
        row = re.search(r'<tr data-user="carol">.*?</tr>', page, re.DOTALL)
        assert row is not None and "yes" in row.group(0)  # superuser
        with http_login(ui_world.url, "carol", "carol-password-1"):
            pass

        page = shown(root, post(root, "/ui/admin/users/change", name="carol", action="disable"))
        assert "Disabled carol" in page and "Enable" in page
        with httpx.Client(base_url=ui_world.url) as client:
            form = client.get("/ui/login")
            answer = client.post("/ui/login", data={"csrf": csrf_of(form.text), "username": "carol",
                                                    "password": "carol-password-1"})
            assert answer.status_code != 303 and not client.cookies.get(SESSION_COOKIE)
        assert "Enabled carol." in shown(root, post(root, "/ui/admin/users/change", name="carol", action="enable"))

        page = shown(root, post(root, "/ui/admin/users/change", name="carol", action="password",
                                password="carol-password-2"))
        assert "Set the password of carol." in page
        with http_login(ui_world.url, "carol", "carol-password-2"):
            pass

        confirm = root.get("/ui/admin/users/delete", params={"name": "carol"})
        assert confirm.status_code == 200 and "Delete the user carol?" in confirm.text
        page = shown(root, root.post("/ui/admin/users/delete", data={"csrf": csrf_of(confirm.text), "name": "carol"}))
        assert "Deleted the user carol." in page and 'data-user="carol"' not in page
    changes = [(entry["actor"], entry["detail"]["change"], entry["detail"]["name"])
               for entry in admin_changes(ui_world) if entry["detail"].get("name") == "carol"]
    assert changes == [("root", "user.delete", "carol")] + [("root", "user.change", "carol")] * 3 + [
        ("root", "user.add", "carol")]


def test_bad_user_input_is_the_apis_error(ui_world: UiWorld) -> None:
    with http_login(ui_world.url, "root", PASSWORDS["root"]) as root:
        refused(post(root, "/ui/admin/users", name="", password="pw-1234567"), 400, "BAD_REQUEST")
        refused(post(root, "/ui/admin/users", name="bob", password="pw-1234567"), 409, "ACCOUNT_EXISTS")
        refused(post(root, "/ui/admin/users", name="Not A Name!", password="pw-1234567"), 400, "INVALID_NAME")
        refused(post(root, "/ui/admin/users", name="dave", password="x"), 400, "PASSWORD_REJECTED")
        refused(post(root, "/ui/admin/users/change", name="bob", action="password", password=""),
                400, "PASSWORD_REJECTED")
        refused(post(root, "/ui/admin/users/change", name="bob", action="promote"), 400, "BAD_REQUEST")
        refused(post(root, "/ui/admin/users/change", name="nobody", action="disable"), 404, "ACCOUNT_UNKNOWN")
        refused(root.get("/ui/admin/users/delete", params={"name": "nobody"}), 404, "ACCOUNT_UNKNOWN")
        refused(post(root, "/ui/admin/users/delete", name="nobody"), 404, "ACCOUNT_UNKNOWN")
        refused(root.get("/ui/admin/users", params={"done": "x\x00"}), 400, "UNSUPPORTED")


def test_organizations_teams_and_members(ui_world: UiWorld) -> None:
    with http_login(ui_world.url, "root", PASSWORDS["root"]) as root:
        page = shown(root, post(root, "/ui/admin/organizations", name="acme", owners="alice"))
        assert "Created the organization acme." in page
        assert re.search(r"Owners: alice\b", page)
        assert "Created the team acme/devs." in shown(root, post(root, "/ui/admin/teams", org="acme", name="devs"))
        refused(post(root, "/ui/admin/teams", org="acme", name="devs"), 409, "TEAM_EXISTS")
        refused(post(root, "/ui/admin/teams", org="nothing", name="devs"), 404, "ACCOUNT_UNKNOWN")

        page = shown(root, post(root, "/ui/admin/teams/members", org="acme", team="devs", member="bob", action="add"))
        row = re.search(r'<tr data-team="acme/devs">.*?</tr>', page, re.DOTALL)
        assert row is not None and 'value="bob"' in row.group(0)
        refused(post(root, "/ui/admin/teams/members", org="acme", team="devs", member="", action="add"),
                400, "BAD_REQUEST")
        refused(post(root, "/ui/admin/teams/members", org="acme", team="devs", member="bob", action="swap"),
                400, "BAD_REQUEST")
        refused(post(root, "/ui/admin/teams/members", org="acme", team="devs", member="nobody", action="add"),
                404, "ACCOUNT_UNKNOWN")
        page = shown(root, post(root, "/ui/admin/teams/members", org="acme", team="devs", member="bob",
                                action="remove"))
        row = re.search(r'<tr data-team="acme/devs">.*?</tr>', page, re.DOTALL)
        assert row is not None and 'value="bob"' not in row.group(0)

        refused(root.get("/ui/admin/teams/delete", params={"org": "acme", "team": "nope"}), 404, "TEAM_UNKNOWN")
        confirm = root.get("/ui/admin/teams/delete", params={"org": "acme", "team": "devs"})
        assert "Delete the team acme/devs?" in confirm.text
        page = shown(root, root.post("/ui/admin/teams/delete", data={"csrf": csrf_of(confirm.text), "org": "acme",
                                                                     "team": "devs"}))
        assert "Deleted the team acme/devs." in page and 'data-team="acme/devs"' not in page

        confirm = root.get("/ui/admin/organizations/delete", params={"name": "acme"})
        assert "Delete the organization acme?" in confirm.text
        page = shown(root, root.post("/ui/admin/organizations/delete", data={"csrf": csrf_of(confirm.text),
                                                                             "name": "acme"}))
        assert "Deleted the organization acme." in page and 'data-org="acme"' not in page
        refused(root.get("/ui/admin/organizations/delete", params={"name": "alice"}), 404, "ACCOUNT_UNKNOWN")
    changes = [entry["detail"]["change"] for entry in admin_changes(ui_world)[:6]]
    assert changes == ["org.delete", "team.delete", "team.member.remove", "team.member.add", "team.add", "org.add"]


def test_a_robots_token_is_shown_once_rotated_and_the_robot_deleted(ui_world: UiWorld) -> None:
    with http_login(ui_world.url, "root", PASSWORDS["root"]) as root:
        made = post(root, "/ui/admin/robots", owner="alice", name="builder")
        assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
        found = TOKEN.search(made.text)
        assert found is not None
        token = unescape(found.group(1))
        listing = root.get("/ui/admin/robots", params={"owner": "alice"})
        assert 'data-robot="alice+builder"' in listing.text and token not in listing.text
        assert 'data-robot="alice+builder"' in root.get("/ui/admin/robots").text  # every owner's
        assert token_for(ui_world, "alice+builder", token).status_code == 200

        confirm = root.get("/ui/admin/robots/rotate", params={"name": "alice+builder"})
        assert "Rotate the token of alice+builder?" in confirm.text and token not in confirm.text
        rotated = root.post("/ui/admin/robots/rotate", data={"csrf": csrf_of(confirm.text), "name": "alice+builder"})
        assert rotated.status_code == 200 and rotated.headers["cache-control"] == "no-store"
        found = TOKEN.search(rotated.text)
        assert found is not None and unescape(found.group(1)) != token
        assert token_for(ui_world, "alice+builder", token).status_code == 401
        assert token_for(ui_world, "alice+builder", unescape(found.group(1))).status_code == 200

        refused(post(root, "/ui/admin/robots", owner="alice", name="builder"), 409, "ACCOUNT_EXISTS")
        refused(post(root, "/ui/admin/robots", owner="nobody", name="x"), 404, "ACCOUNT_UNKNOWN")
        refused(post(root, "/ui/admin/robots", owner="alice", name=""), 400, "BAD_REQUEST")
        refused(root.get("/ui/admin/robots/rotate", params={"name": "alice"}), 404, "ACCOUNT_UNKNOWN")
        refused(post(root, "/ui/admin/robots/delete", name="alice+nothing"), 404, "ACCOUNT_UNKNOWN")

        confirm = root.get("/ui/admin/robots/delete", params={"name": "alice+builder"})
        page = shown(root, root.post("/ui/admin/robots/delete", data={"csrf": csrf_of(confirm.text),
                                                                      "name": "alice+builder"}))
        assert "Deleted the robot alice+builder." in page and 'data-robot="alice+builder"' not in page
    changes = [entry["detail"]["change"] for entry in admin_changes(ui_world) if
               entry["detail"].get("name") == "alice+builder"]
    assert changes == ["robot.delete", "robot.rotate", "robot.add"]
    assert all(token not in str(entry) for entry in admin_changes(ui_world))


def token_for(world: UiWorld, name: str, secret: str) -> httpx.Response:
    return httpx.get(f"{world.url}/auth/token", auth=(name, secret),
                     params={"service": "cargohold", "scope": f"repository:{APP}:pull"})


def test_grants_revokes_and_visibility(ui_world: UiWorld) -> None:
    with http_login(ui_world.url, "root", PASSWORDS["root"]) as root:
        tags = root.get(f"/ui/repositories/{SECRET}/-/tags").text
        assert f'href="/ui/admin/permissions?repository={SECRET.replace("/", "%2F")}"' in tags
        page = root.get("/ui/admin/permissions", params={"repository": SECRET}).text
        assert 'data-who="root"' in page and 'data-who="bob"' not in page and "is <strong>private" in page

        page = shown(root, post(root, "/ui/admin/permissions", repository=SECRET, action="grant", grantee="bob",
                                role="read"))
        assert f"Granted the role on {SECRET}." in page
        row = re.search(r'<tr data-who="bob">.*?</tr>', page, re.DOTALL)
        assert row is not None and "read" in row.group(0) and "Revoke" in row.group(0)
        with http_login(ui_world.url, "bob", PASSWORDS["bob"]) as bob:
            assert bob.get(f"/ui/repositories/{SECRET}/-/tags").status_code == 200
            assert "/ui/admin/permissions" not in bob.get(f"/ui/repositories/{SECRET}/-/tags").text

        refused(post(root, "/ui/admin/permissions", repository=SECRET, action="grant", grantee="bob", role="owner"),
                400, "ACCESS_MODEL_ERROR")  # the API's code for an unknown role
        refused(post(root, "/ui/admin/permissions", repository=SECRET, action="grant", grantee="", role="read"),
                400, "BAD_REQUEST")
        refused(post(root, "/ui/admin/permissions", repository=SECRET, action="grant", grantee="nobody",
                     role="read"), 404, "ACCOUNT_UNKNOWN")
        refused(post(root, "/ui/admin/permissions", repository="", action="grant", grantee="bob", role="read"),
                400, "BAD_REQUEST")
        refused(post(root, "/ui/admin/permissions", repository=SECRET, action="explode"), 400, "BAD_REQUEST")
        refused(root.get("/ui/admin/permissions/revoke", params={"repository": SECRET, "grantee": "alice"}),
                404, "ACCOUNT_UNKNOWN")  # alice's grant is on team/*, not on the repository

        confirm = root.get("/ui/admin/permissions/revoke", params={"repository": SECRET, "grantee": "bob"})
        assert f"Revoke the grant of bob on {SECRET}?" in unescape(confirm.text)
        page = shown(root, root.post("/ui/admin/permissions/revoke", data={
            "csrf": csrf_of(confirm.text), "repository": SECRET, "grantee": "bob"}))
        assert f"Revoked the grant on {SECRET}." in page and 'data-who="bob"' not in page
        refused(post(root, "/ui/admin/permissions/revoke", repository=SECRET, grantee="bob"), 404, "ACCOUNT_UNKNOWN")
        with http_login(ui_world.url, "bob", PASSWORDS["bob"]) as bob:
            assert bob.get(f"/ui/repositories/{SECRET}/-/tags").status_code == 404

        page = shown(root, post(root, "/ui/admin/permissions", repository=SECRET, action="public"))
        assert f"{SECRET} is public" in page and 'data-who="anonymous"' in page
        with httpx.Client(base_url=ui_world.url) as anonymous:
            token = anonymous.get("/auth/token", params={"service": "cargohold",
                                                         "scope": f"repository:{SECRET}:pull"}).json()["token"]
            anonymous.headers["Authorization"] = f"Bearer {token}"
            assert anonymous.get(f"/v2/{SECRET}/tags/list").status_code == 200
        page = shown(root, post(root, "/ui/admin/permissions", repository=SECRET, action="private"))
        assert f"{SECRET} is private." in page and 'data-who="anonymous"' not in page

        page = root.get("/ui/admin/permissions", params={"repository": "team/*"}).text
        assert 'data-who="alice"' in page and "Make public" not in page  # a pattern has no visibility
    changes = [(entry["detail"]["change"], entry["repository"]) for entry in admin_changes(ui_world)[:4]]
    assert changes == [("repository.visibility", SECRET), ("repository.visibility", SECRET),
                       ("permission.revoke", SECRET), ("permission.grant", SECRET)]


def test_the_audit_log_filters_and_pages(ui_world: UiWorld) -> None:
    with http_login(ui_world.url, "root", PASSWORDS["root"]) as root:
        for name in ("audit-a", "audit-b", "audit-c"):
            shown(root, post(root, "/ui/admin/organizations", name=name))
        page = root.get("/ui/admin/audit", params={"action": "admin", "actor": "root", "since": "1h", "n": "2"})
        assert page.status_code == 200
        assert page.text.count("name=audit-c") == 1 and page.text.count("name=audit-b") == 1
        assert "name=audit-a" not in page.text
        following = re.search(r'<a rel="next" href="([^"]+)"', page.text)
        assert following is not None
        older = root.get(unescape(following.group(1)))
        assert "name=audit-a" in older.text and "name=audit-c" not in older.text

        pushes = root.get("/ui/admin/audit", params={"repository": "team/*", "action": "manifest"}).text
        assert APP in pushes and "org.add" not in pushes
        assert "No entries match." in root.get("/ui/admin/audit", params={"actor": "nobody-at-all"}).text
        refused(root.get("/ui/admin/audit", params={"since": "yesterday"}), 400, "BAD_REQUEST")
        refused(root.get("/ui/admin/audit", params={"n": "many"}), 400, "BAD_REQUEST")
        refused(root.get("/ui/admin/audit", params={"last": "-1"}), 400, "BAD_REQUEST")


def test_a_robot_may_push_after_a_grant_made_in_the_pages(ui_world: UiWorld) -> None:
    """The plain-HTTP half of the browser test: the grant the page makes is the one the registry checks."""
    with http_login(ui_world.url, "root", PASSWORDS["root"]) as root:
        found = TOKEN.search(post(root, "/ui/admin/robots", owner="root", name="pusher").text)
        assert found is not None
        secret = unescape(found.group(1))
        assert push_as(ui_world, "root+pusher", secret).status_code in (401, 403)  # not yet granted
        shown(root, post(root, "/ui/admin/permissions", repository=APP, action="grant", grantee="root+pusher",
                         role="write"))
    assert push_as(ui_world, "root+pusher", secret).status_code == 201


def push_as(world: UiWorld, name: str, secret: str) -> httpx.Response:
    with httpx.Client(base_url=world.url) as client:
        answer = client.get("/auth/token", auth=(name, secret),
                            params={"service": "cargohold", "scope": f"repository:{APP}:pull,push"})
        assert answer.status_code == 200, answer.text
        client.headers["Authorization"] = f"Bearer {answer.json()['token']}"
        data = f"pushed by {name}".encode()
        return client.post(f"/v2/{APP}/blobs/uploads/", params={"digest": sha256(data)}, content=data)



def shoot(page: Page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)


def test_in_a_browser_a_robot_is_made_granted_write_and_pushes(
    ui_world: UiWorld, browser: Browser, tmp_path: Path,
) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        browser_login(page, ui_world.url, "root", PASSWORDS["root"])
        page.click("header a:text-is('Administration')")
        shoot(page, tmp_path, "admin")
        page.click("a:text-is('Organizations')")
        page.fill("input[name=name] >> nth=-1", "browsers")
        page.fill("input[name=owners]", "alice, bob")
        page.click("button:text-is('Create')")
        page.fill("section[data-org=browsers] input[name=name]", "builders")
        page.click("section[data-org=browsers] button:text-is('Create team')")
        page.fill("tr[data-team='browsers/builders'] input[name=member]", "alice")
        page.click("tr[data-team='browsers/builders'] button:text-is('Add')")
        assert page.inner_text("p.done") == "Added the member to browsers/builders."
        shoot(page, tmp_path, "organizations")

        page.goto(f"{ui_world.url}/ui/admin/users")
        assert page.locator("tr[data-user=alice]").count() == 1
        shoot(page, tmp_path, "users")
        page.goto(f"{ui_world.url}/ui/admin/robots")
        page.fill("form[method=post] input[name=owner]", "root")
        page.fill("form[method=post] input[name=name]", "ci")
        page.click("button:text-is('Create')")
        shoot(page, tmp_path, "token")
        secret = page.inner_text("code.robot-token")
        assert page.inner_text("code.robot-name") == "root+ci" and secret
        assert secret not in page.url
        page.click("a:text-is('Back to the robots')")
        assert page.locator("tr[data-robot='root+ci']").count() == 1 and secret not in page.content()
        shoot(page, tmp_path, "robots")
        page.click("tr[data-robot='root+ci'] a:text-is('Rotate token')")
        shoot(page, tmp_path, "rotate")
        page.click("a:text-is('Cancel')")  # the token stays

        page.goto(f"{ui_world.url}/ui/repositories/{APP}/-/tags")
        page.click("a.permissions")
        page.fill("input[name=grantee]", "root+ci")
        page.select_option("select[name=role]", "write")
        page.click("button:text-is('Grant')")
        assert page.inner_text("p.done") == f"Granted the role on {APP}."
        assert page.inner_text("tr[data-who='root+ci']").split("\t")[:3] == ["root+ci", "write", "grant"]
        shoot(page, tmp_path, "permissions")

        pushed = push_as(ui_world, "root+ci", secret)
        assert pushed.status_code == 201, pushed.text

        page.goto(f"{ui_world.url}/ui/admin/audit")
        page.fill("input[name=actor]", "root")
        page.fill("input[name=action]", "admin")
        page.click("button:text-is('Filter')")
        changes = page.locator("table.audit tbody td.detail").all_inner_texts()
        assert changes[0].startswith("change=permission.grant") and "grantee=root+ci" in changes[0]
        assert changes[1] == "change=robot.add, name=root+ci"
        page.fill("input[name=actor]", "root+ci")
        page.fill("input[name=action]", "blob.push")
        page.click("button:text-is('Filter')")
        rows = page.locator("table.audit tbody tr").all_inner_texts()
        assert len(rows) == 1 and "root+ci (robot)" in rows[0] and APP in rows[0]
        page.fill("input[name=actor]", "")
        page.fill("input[name=action]", "")
        page.click("button:text-is('Filter')")
        shoot(page, tmp_path, "audit")
    finally:
        context.close()

    context = browser.new_context()
    page = context.new_page()
    try:
        browser_login(page, ui_world.url, "alice", PASSWORDS["alice"])
        assert page.locator("header a:text-is('Administration')").count() == 0
        page.goto(f"{ui_world.url}/ui/repositories/{APP}/-/tags")
        assert page.locator("a.permissions").count() == 0
        for path in PAGES:
            answer = page.goto(f"{ui_world.url}{path}")
            assert answer is not None and answer.status == 403, path
        shoot(page, tmp_path, "refused")
    finally:
        context.close()
