"""The UI's sessions, CSRF tokens and authorization, over plain HTTP with the session cookie a browser would hold."""

from __future__ import annotations

import re

import httpx

from tests.interop.tools import requires_skopeo

from .conftest import APP, PASSWORDS, SECRET, UiWorld, basic
from .support import SESSION_COOKIE, csrf_of, http_login

pytestmark = requires_skopeo


def test_a_form_without_the_sessions_csrf_token_is_refused(ui_world: UiWorld) -> None:
    with http_login(ui_world.url, "alice", PASSWORDS["alice"]) as alice:
        confirm = alice.get(f"/ui/repositories/{APP}/-/delete", params={"reference": "v1"})
        assert confirm.status_code == 200
        token = csrf_of(confirm.text)
        wrong = token[:-1] + ("x" if token[-1] != "x" else "y")
        for form in ({"reference": "v1"}, {"reference": "v1", "csrf": ""}, {"reference": "v1", "csrf": wrong}):
            refused = alice.post(f"/ui/repositories/{APP}/-/delete", data=form)
            assert refused.status_code == 403, refused.text
            assert "CSRF" in refused.text and refused.headers["content-type"].startswith("text/html")
        refused = alice.post("/ui/logout", data={})
        assert refused.status_code == 403
        assert ">v1</a>" in alice.get(f"/ui/repositories/{APP}/-/tags").text, "nothing was deleted"

    with http_login(ui_world.url, "bob", PASSWORDS["bob"]) as bob:  # another session's token is no good either
        refused = bob.post(f"/ui/repositories/{APP}/-/delete", data={"reference": "v1", "csrf": token})
        assert refused.status_code == 403


def test_the_session_cookie_is_scoped_and_ends_at_logout(ui_world: UiWorld) -> None:
    with httpx.Client(base_url=ui_world.url) as client:
        form = client.get("/ui/login")
        back = f"/ui/repositories/{APP}/-/tags"
        answer = client.post("/ui/login", data={"csrf": csrf_of(form.text), "username": "alice",
                                                "password": PASSWORDS["alice"], "next": back})
        assert answer.status_code == 303 and answer.headers["location"] == f"/ui/repositories/{APP}/-/tags"
        cookie = next(value for name, value in answer.headers.multi_items()
                      if name == "set-cookie" and value.startswith(f"{SESSION_COOKIE}="))
        for attribute in ("HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=28800"):
            assert attribute in cookie
        assert "Secure" not in cookie  # plain HTTP here
        session = client.cookies[SESSION_COOKIE]
        page = client.get("/ui/repositories")
        assert page.status_code == 200
        assert client.post("/ui/logout", data={"csrf": csrf_of(page.text)}).status_code == 303

    with httpx.Client(base_url=ui_world.url, cookies={SESSION_COOKIE: session}) as replay:
        again = replay.get("/ui/repositories")
        assert again.status_code == 303 and again.headers["location"].startswith("/ui/login?")


def test_a_password_change_ends_the_accounts_sessions(ui_world: UiWorld) -> None:
    with ui_world.admin() as admin:
        assert admin.post("/admin/v1/users", json={"name": "carol", "password": "carol-password-1"}).status_code < 300
        with http_login(ui_world.url, "carol", "carol-password-1") as carol:
            assert carol.get("/ui/repositories").status_code == 200
            changed = admin.patch("/admin/v1/users/carol", json={"password": "carol-password-2"})
            assert changed.status_code < 300, changed.text
            assert carol.get("/ui/repositories").status_code == 303


def test_wrong_credentials_and_robots_do_not_log_in(ui_world: UiWorld) -> None:
    with httpx.Client(base_url=ui_world.url) as client:
        form = client.get("/ui/login")
        wrong = client.post("/ui/login", data={"csrf": csrf_of(form.text), "username": "alice", "password": "nope"})
        assert wrong.status_code == 401
        assert "invalid username or password" in wrong.text and SESSION_COOKIE not in client.cookies
        no_token = client.post("/ui/login", data={"username": "alice", "password": PASSWORDS["alice"]})
        assert no_token.status_code == 403 and SESSION_COOKIE not in client.cookies
    with ui_world.admin() as admin:
        robot = admin.post("/admin/v1/robots", json={"owner": "alice", "name": "ci"})
        assert robot.status_code < 300, robot.text
        secret = robot.json()["token"]
        audit = admin.get("/admin/v1/audit", params={"action": "login", "actor": "alice"}).json()["entries"]
        assert audit[0]["result"] == "denied"  # the refused login is in the audit log
    with httpx.Client(base_url=ui_world.url) as client:
        form = client.get("/ui/login")
        refused = client.post("/ui/login", data={"csrf": csrf_of(form.text), "username": "alice+ci",
                                                 "password": secret})
        assert refused.status_code == 403 and "robot" in refused.text
        assert SESSION_COOKIE not in client.cookies


def test_login_goes_back_only_to_the_ui(ui_world: UiWorld) -> None:
    for target in ("https://elsewhere.example/", "//elsewhere.example/ui/", "/v2/_catalog", "/ui\\..\\x"):
        with httpx.Client(base_url=ui_world.url) as client:
            form = client.get("/ui/login", params={"next": target})
            assert target not in form.text
            answer = client.post("/ui/login", data={"csrf": csrf_of(form.text), "username": "bob",
                                                    "password": PASSWORDS["bob"], "next": target})
            assert answer.headers["location"] == "/ui/repositories"


def test_a_user_sees_only_what_it_may_read_and_deletes_only_where_it_may(ui_world: UiWorld) -> None:
    with http_login(ui_world.url, "bob", PASSWORDS["bob"]) as bob:
        listing = bob.get("/ui/repositories")
        assert f">{APP}</a>" in listing.text and SECRET not in listing.text
        assert SECRET not in bob.get("/ui/repositories", params={"q": "secret"}).text
        for path in (f"/ui/repositories/{SECRET}/-/tags", f"/ui/repositories/{SECRET}/-/manifests/v1",
                     f"/ui/repositories/{SECRET}/-/delete?reference=v1", "/ui/repositories/team/none/-/tags"):
            hidden = bob.get(path)
            assert hidden.status_code == 404, path
            assert "NAME_UNKNOWN" in hidden.text
        tags = bob.get(f"/ui/repositories/{APP}/-/tags")
        assert tags.status_code == 200 and "Delete" not in tags.text  # read only: no delete links
        denied = bob.get(f"/ui/repositories/{APP}/-/delete", params={"reference": "v1"})
        assert denied.status_code == 403
        posted = bob.post(f"/ui/repositories/{APP}/-/delete", data={"reference": "v1", "csrf": csrf_of(tags.text)})
        assert posted.status_code == 403
        assert ">v1</a>" in bob.get(f"/ui/repositories/{APP}/-/tags").text


def test_every_ui_answer_carries_the_security_headers(ui_world: UiWorld) -> None:
    with http_login(ui_world.url, "bob", PASSWORDS["bob"]) as bob:
        for path, status in [
            ("/ui/repositories", 200), ("/ui/login", 200), ("/ui/static/ui.css", 200), ("/ui/", 303),
            ("/ui/nowhere", 404), (f"/ui/repositories/{SECRET}/-/tags", 404), ("/ui/repositories/Bad/-/tags", 400),
            (f"/ui/repositories/{APP}/-/manifests/sha256:0", 400),
        ]:
            answer = bob.get(path)
            assert answer.status_code == status, path
            assert answer.headers["content-security-policy"] == "default-src 'self'; frame-ancestors 'none'"
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["referrer-policy"] == "same-origin"
        assert bob.put("/ui/repositories").status_code == 405
        too_big = bob.post("/ui/logout", content=b"csrf=" + b"x" * 20_000,
                           headers={"content-type": "application/x-www-form-urlencoded"})
        assert too_big.status_code == 400 and "SIZE_INVALID" in too_big.text
        garbled = bob.post("/ui/logout", content=b"csrf=\xff\xfe",
                           headers={"content-type": "application/x-www-form-urlencoded"})
        assert garbled.status_code == 400 and "not UTF-8" in garbled.text


def test_a_ui_session_is_no_api_credential(ui_world: UiWorld) -> None:
    with http_login(ui_world.url, "alice", PASSWORDS["alice"]) as alice:
        session = alice.cookies[SESSION_COOKIE]
    cookie = {"Cookie": f"{SESSION_COOKIE}={session}"}
    assert httpx.get(f"{ui_world.url}/v2/{APP}/tags/list", headers=cookie).status_code == 401
    assert httpx.get(f"{ui_world.url}/admin/v1/whoami", headers=cookie).status_code == 401
    assert httpx.get(f"{ui_world.url}/admin/v1/whoami", headers={"Authorization": basic("alice")}).status_code == 200


def test_a_manifest_deleted_by_digest_takes_its_tags(ui_world: UiWorld) -> None:
    with http_login(ui_world.url, "alice", PASSWORDS["alice"]) as alice:
        index = alice.get(f"/ui/repositories/{APP}/-/manifests/multi")
        digest = re.search(r"<dt>Digest</dt><dd><code>(sha256:[0-9a-f]{64})</code>", index.text)
        assert digest is not None
        confirm = alice.get(f"/ui/repositories/{APP}/-/delete", params={"reference": digest.group(1)})
        assert confirm.status_code == 200 and "with every tag naming it: multi." in confirm.text
        done = alice.post(f"/ui/repositories/{APP}/-/delete",
                          data={"reference": digest.group(1), "csrf": csrf_of(confirm.text)})
        assert done.status_code == 303
        quoted = digest.group(1).replace(":", "%3A")
        assert done.headers["location"] == f"/ui/repositories/{APP}/-/tags?deleted={quoted}"
        assert ">multi</a>" not in alice.get(f"/ui/repositories/{APP}/-/tags").text
        assert alice.get(f"/ui/repositories/{APP}/-/manifests/{digest.group(1)}").status_code == 404
        again = alice.post(f"/ui/repositories/{APP}/-/delete",
                           data={"reference": digest.group(1), "csrf": csrf_of(confirm.text)})
        assert again.status_code == 404 and "MANIFEST_UNKNOWN" in again.text
        bad = alice.post(f"/ui/repositories/{APP}/-/delete",
                         data={"reference": "sha256:nope", "csrf": csrf_of(confirm.text)})
        assert bad.status_code == 400 and "DIGEST_INVALID" in bad.text
    with ui_world.admin() as admin:
        audit = admin.get("/admin/v1/audit", params={"repository": APP, "action": "manifest.delete"})
        entries = audit.json()["entries"]
        assert [(entry["actor"], entry["digest"]) for entry in entries] == [("alice", digest.group(1))]


def test_bad_input_gets_a_clear_error_never_a_failure(ui_world: UiWorld) -> None:
    tags = f"/ui/repositories/{APP}/-/tags"
    with http_login(ui_world.url, "alice", PASSWORDS["alice"]) as alice:
        for path, params, status, code in [
            (tags, {"q": "a\x00b"}, 400, "UNSUPPORTED"),
            (tags, {"after": "\x00"}, 400, "UNSUPPORTED"),
            ("/ui/repositories", {"namespace": "team\x00"}, 400, "UNSUPPORTED"),
            (f"/ui/repositories/{APP}/-/manifests/v1%00", {}, 404, "MANIFEST_UNKNOWN"),
            (f"/ui/repositories/{APP}/-/manifests/{'x' * 200}", {}, 404, "MANIFEST_UNKNOWN"),
            (f"/ui/repositories/{APP}/-/delete", {"reference": "v1\x00"}, 400, "UNSUPPORTED"),
            (f"/ui/repositories/{APP}/-/delete", {"reference": "a b"}, 404, "MANIFEST_UNKNOWN"),
            (f"/ui/repositories/{APP}/-/delete", {}, 404, "MANIFEST_UNKNOWN"),
        ]:
            answer = alice.get(path, params=params)
            assert (answer.status_code, code in answer.text) == (status, True), (path, params, answer.text[-300:])
        for params in ({"limit": "9" * 5000}, {"limit": "-1"}, {"limit": "0"}, {"limit": "x"}, {"limit": "²"},
                       {"sort": "pushed", "after": "9" * 5000 + ":t"}, {"sort": "pushed", "after": "9" * 20 + ":t"},
                       {"sort": "pushed", "after": "no-colon"}, {"sort": "nonsense"}):
            answer = alice.get(tags, params=params)
            assert answer.status_code == 200 and ">v1</a>" in answer.text, params
        confirm = alice.get(f"/ui/repositories/{APP}/-/delete", params={"reference": "v1"})
        posted = alice.post(f"/ui/repositories/{APP}/-/delete",
                            data={"reference": "v1", "csrf": csrf_of(confirm.text), "x\x00": "y"})
        assert posted.status_code == 400 and "NUL" in posted.text
    with httpx.Client(base_url=ui_world.url) as client:
        form = client.get("/ui/login", params={"next": "/ui/\x00"})
        assert 'name="next" value="/ui/repositories"' in form.text
        answer = client.post("/ui/login", data={"csrf": csrf_of(form.text), "username": "alice\x00",
                                                "password": PASSWORDS["alice"]})
        assert answer.status_code == 400 and "NUL" in answer.text


def test_the_administration_pages_are_for_superusers(ui_world: UiWorld) -> None:
    with http_login(ui_world.url, "root", PASSWORDS["root"]) as root:
        home = root.get("/ui/admin")
        assert home.status_code == 200 and "<h1>Administration</h1>" in home.text
        assert 'href="/ui/admin"' in root.get("/ui/repositories").text
    with http_login(ui_world.url, "alice", PASSWORDS["alice"]) as alice:
        refused = alice.get("/ui/admin")
        assert refused.status_code == 403 and refused.headers["content-type"].startswith("text/html")
        assert 'href="/ui/admin"' not in alice.get("/ui/repositories").text
    with httpx.Client(base_url=ui_world.url) as anonymous:
        answer = anonymous.get("/ui/admin")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/login?")
