"""The web UI in a real chromium against a token-auth cargohold: log in, browse to a tag skopeo pushed, read its
layers, copy its pull command, delete it behind the confirmation, and find the deletion in the audit log.
Each page is screenshotted into the test's tmp dir."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Browser, Dialog, Page

from cargohold.sizes import human_size
from tests.interop.tools import requires_skopeo
from tests.support.requirements import requires_tool

from .conftest import APP, BUILT, MARKUP, PASSWORDS, SECRET, SIGNATURE_TYPE, UiWorld
from .support import browser_login

SECURITY = {
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}

pytestmark = [requires_skopeo, requires_tool("chromium")]


def watch_dialogs(page: Page) -> list[str]:
    """The messages of the dialogs (alert, confirm) the page opens, each dismissed: markup that ran would open one."""
    seen: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        seen.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    return seen


def shoot(page: Page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)


def test_login_browse_copy_and_delete_a_tag(ui_world: UiWorld, browser: Browser, tmp_path: Path) -> None:
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    dialogs = watch_dialogs(page)
    try:
        page.goto(f"{ui_world.url}/ui/repositories")
        assert page.url.startswith(f"{ui_world.url}/ui/login"), "an anonymous visitor is sent to the login form"
        shoot(page, tmp_path, "login")
        browser_login(page, ui_world.url, "alice", PASSWORDS["alice"])
        for name, value in SECURITY.items():
            assert page.request.get(page.url).headers[name] == value
        shoot(page, tmp_path, "repositories")
        assert page.locator(f"a:text-is('{APP}')").count() == 1
        assert page.locator(f"a:text-is('{SECRET}')").count() == 1  # alice may write team/*
        with ui_world.admin() as admin:
            usage = admin.get("/admin/v1/usage", params={"name": SECRET}).json()
        secret = page.locator("tbody tr", has=page.locator(f"a:text-is('{SECRET}')")).locator("td")
        assert secret.all_inner_texts()[1:4] == ["1", human_size(usage["repositories"][0]["exclusive_bytes"]), "0 B"]

        page.click(f"a:text-is('{APP}')")
        page.wait_for_url(f"{ui_world.url}/ui/repositories/{APP}/-/tags")
        shoot(page, tmp_path, "tags")
        assert page.locator("a.tag").all_inner_texts() == ["history", "multi", "skopeo", "v1"]

        page.click("a.tag:text-is('skopeo')")
        page.wait_for_url(f"{ui_world.url}/ui/repositories/{APP}/-/manifests/skopeo")
        shoot(page, tmp_path, "manifest")
        rows = page.locator("table.layers tbody tr")
        assert rows.count() == len(ui_world.skopeo_layers)
        for index, (digest, size) in enumerate(ui_world.skopeo_layers):
            assert digest in rows.nth(index).inner_text()
            assert rows.nth(index).locator("td.layer-size").inner_text() == human_size(size)
        assert "linux/amd64" in page.inner_text("main")  # from the image's config
        assert "/bin/sh" in page.inner_text("main")

        page.go_back()
        row = page.locator("table.tags tbody tr", has=page.locator("a.tag:text-is('skopeo')"))
        row.locator("summary").click()
        copy = row.locator("div.command[data-client=docker] button.copy")
        copy.click()
        expected = f"docker pull {ui_world.server.host}/{APP}:skopeo"
        assert page.evaluate("navigator.clipboard.readText()") == expected
        assert copy.inner_text() == "Copied"
        shoot(page, tmp_path, "tags-commands")

        row.locator("a.danger").click()
        page.wait_for_url(f"{ui_world.url}/ui/repositories/{APP}/-/delete?reference=skopeo")
        shoot(page, tmp_path, "delete")
        page.click("button.danger")
        page.wait_for_url(f"{ui_world.url}/ui/repositories/{APP}/-/tags?deleted=skopeo")
        shoot(page, tmp_path, "deleted")
        assert page.inner_text("p.done") == "Deleted skopeo."
        assert page.locator("a.tag").all_inner_texts() == ["history", "multi", "v1"]
    finally:
        context.close()
    assert dialogs == []

    with ui_world.admin() as admin:
        tags = admin.get("/auth/token", params={"service": "cargohold", "scope": f"repository:{APP}:pull"})
        token = tags.json()["token"]
        listed = httpx.get(f"{ui_world.url}/v2/{APP}/tags/list", headers={"Authorization": f"Bearer {token}"})
        assert listed.json()["tags"] == ["history", "multi", "v1"]
        audit = admin.get("/admin/v1/audit", params={"repository": APP, "action": "tag.delete"})
        assert audit.status_code == 200, audit.text
        entries = audit.json()["entries"]
        assert [(e["actor"], e["tag"]) for e in entries] == [("alice", "skopeo")]


def test_markup_in_what_users_wrote_renders_as_text(ui_world: UiWorld, browser: Browser, tmp_path: Path) -> None:
    page = browser.new_page()
    dialogs = watch_dialogs(page)
    try:
        browser_login(page, ui_world.url, "alice", PASSWORDS["alice"])
        page.goto(f"{ui_world.url}/ui/repositories/{APP}/-/manifests/v1")
        shoot(page, tmp_path, "annotated")
        assert page.inner_text("dl.annotations dd") == MARKUP
        referrer = page.locator("table.referrers tbody tr")
        assert referrer.count() == 1 and SIGNATURE_TYPE in referrer.inner_text()
        referrer.locator("a.digest").click()
        assert "Subject" in page.inner_text("dl.facts")

        page.goto(f"{ui_world.url}/ui/repositories/{APP}/-/manifests/history")
        shoot(page, tmp_path, "history")
        history = page.locator("table.history tbody tr")
        assert [row.split("\t") for row in history.all_inner_texts()] == [
            [entry["created"], entry["created_by"], "empty" if entry.get("empty_layer") else ""]
            for entry in BUILT["history"]
        ]
        facts = page.inner_text("main")
        assert "linux/arm64/v8" in facts and "/app" in facts and "--serve" in facts and "/srv" in facts

        probe = "<img src=x onerror=alert('tag')>"
        page.goto(f"{ui_world.url}/ui/repositories/{APP}/-/tags?q={probe}")
        assert page.input_value("input[name=q]") == probe
        assert "No tags match." in page.inner_text("table.tags")
        page.goto(f"{ui_world.url}/ui/repositories/{APP}/-/manifests/{probe}")
        assert "MANIFEST_UNKNOWN" in page.inner_text("h1")
        page.goto(f"{ui_world.url}/ui/repositories/a{probe}/-/tags")
        shoot(page, tmp_path, "bad-name")
        assert probe in page.inner_text("p.error")  # the name shown, as text
        assert page.locator("img").count() == 0
    finally:
        page.close()
    assert dialogs == []


def test_an_index_lists_its_platforms_with_links(ui_world: UiWorld, browser: Browser, tmp_path: Path) -> None:
    page = browser.new_page()
    try:
        browser_login(page, ui_world.url, "bob", PASSWORDS["bob"])
        page.goto(f"{ui_world.url}/ui/repositories/{APP}/-/tags?q=mul")
        row = page.locator("table.tags tbody tr")
        assert row.count() == 1 and "linux/amd64, linux/arm64" in row.inner_text()
        size_cell = row.locator("td.num").inner_text()
        page.click("a.tag:text-is('multi')")
        shoot(page, tmp_path, "index")
        platforms = page.locator("h2:text-is('Platforms') + table tbody tr")
        assert [text.split("\t")[0] for text in platforms.all_inner_texts()] == ["linux/amd64", "linux/arm64"]
        platforms.nth(1).locator("a.digest").click()
        assert page.locator("table.layers tbody tr").count() == 2
    finally:
        page.close()
    assert size_cell == human_size(index_size(ui_world, "multi"))


def index_size(ui_world: UiWorld, tag: str) -> int:
    """An index's bytes, its children's, and each distinct blob they reference, read through the API."""
    with ui_world.admin() as admin:
        token = admin.get("/auth/token", params={"service": "cargohold", "scope": f"repository:{APP}:pull"})
        api = httpx.Client(base_url=ui_world.url, headers={"Authorization": f"Bearer {token.json()['token']}",
                                                           "Accept": "application/vnd.oci.image.index.v1+json"})
    with api:
        index = api.get(f"/v2/{APP}/manifests/{tag}")
        total, blobs = len(index.content), {}
        for child in index.json()["manifests"]:
            manifest = api.get(f"/v2/{APP}/manifests/{child['digest']}", headers={"Accept": child["mediaType"]})
            total += len(manifest.content)
            for blob in [manifest.json()["config"], *manifest.json()["layers"]]:
                blobs[blob["digest"]] = blob["size"]
    return total + sum(blobs.values())
