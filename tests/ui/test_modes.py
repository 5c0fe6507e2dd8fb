"""The UI without the registry's own accounts: auth off on loopback (read-only browsing without login), and the
configurations where it refuses or is turned off."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest
from playwright.sync_api import Browser

from cargohold.config import ConfigError, load_config
from cargohold.ui.viewer import ACCOUNTS, OPEN, REFUSED, ui_mode
from tests.api.helpers import OCI_MANIFEST, image_manifest, put_manifest
from tests.support.requirements import requires_tool
from tests.support.servers import CargoholdServer, cargohold


@pytest.fixture(scope="module")
def open_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CargoholdServer]:
    """Auth off, listening on 127.0.0.1, holding ``lib/tool:1.0``."""
    with cargohold(tmp_path_factory.mktemp("ui-open")) as server:
        with httpx.Client(base_url=server.url) as client:
            raw = image_manifest(client, "lib/tool", layers=2)
            assert put_manifest(client, "lib/tool", "1.0", raw, OCI_MANIFEST).status_code == 201
        yield server


@requires_tool("chromium")
def test_auth_off_on_loopback_browses_without_login(open_registry: CargoholdServer, browser: Browser,
                                                    tmp_path: Path) -> None:
    page = browser.new_page()
    try:
        page.goto(f"{open_registry.url}/ui/")
        assert page.url == f"{open_registry.url}/ui/repositories"
        assert "read only, without login" in page.inner_text("header")
        page.screenshot(path=str(tmp_path / "open-repositories.png"), full_page=True)
        page.click("a:text-is('lib/tool')")
        page.click("a.tag:text-is('1.0')")
        page.wait_for_url(f"{open_registry.url}/ui/repositories/lib/tool/-/manifests/1.0")
        assert page.locator("table.layers tbody tr").count() == 2
        assert page.locator("a.danger").count() == 0  # read only: nothing to delete with
        page.screenshot(path=str(tmp_path / "open-manifest.png"), full_page=True)
    finally:
        page.close()


def test_auth_off_is_read_only(open_registry: CargoholdServer) -> None:
    with httpx.Client(base_url=open_registry.url) as client:
        assert client.get("/ui/login").headers["location"] == "/ui/repositories"
        tags = client.get("/ui/repositories/lib/tool/-/tags")
        assert tags.status_code == 200 and "Log out" not in tags.text and 'name="csrf"' not in tags.text
        assert client.get("/ui/repositories/lib/tool/-/delete", params={"reference": "1.0"}).status_code == 403
        posted = client.post("/ui/repositories/lib/tool/-/delete", data={"reference": "1.0", "csrf": ""})
        assert posted.status_code == 403
        assert client.get("/v2/lib/tool/tags/list").json()["tags"] == ["1.0"]


@requires_tool("chromium")
def test_htpasswd_has_no_accounts_for_the_ui(tmp_path: Path, browser: Browser) -> None:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("ci:" + bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$") + "\n")
    with cargohold(tmp_path, "--auth", "htpasswd", "--htpasswd", str(htpasswd)) as server:
        for path in ("/ui/repositories", "/ui/login", "/ui/repositories/a/-/tags"):
            refused = httpx.get(f"{server.url}{path}", auth=("ci", "pw"))
            assert refused.status_code == 403, path
            assert "auth.mode: token" in refused.text and "htpasswd" in refused.text
        login = httpx.post(f"{server.url}/ui/login", data={"username": "ci", "password": "pw"})
        assert login.status_code == 403 and "set-cookie" not in login.headers
        page = browser.new_page()
        try:
            page.goto(f"{server.url}/ui/")
            assert page.inner_text("h1") == "The web UI is off"
            page.screenshot(path=str(tmp_path / "refused.png"), full_page=True)
        finally:
            page.close()


def test_the_ui_can_be_turned_off(tmp_path: Path) -> None:
    with cargohold(tmp_path, env={"CARGOHOLD_UI_ENABLED": "false"}) as server:
        answer = httpx.get(f"{server.url}/ui/repositories")
        assert answer.status_code == 404 and answer.json()["errors"][0]["code"] == "NOT_FOUND"


@pytest.mark.parametrize(("flags", "mode"), [
    ({}, OPEN),
    ({"listen": "[::1]:5000"}, OPEN),
    ({"listen": "localhost:5000"}, OPEN),
    ({"listen": "0.0.0.0:5000"}, REFUSED),
    ({"listen": "192.0.2.7:5000"}, REFUSED),
    ({"listen": "0.0.0.0:5000", "auth": "token"}, ACCOUNTS),
    ({"auth": "htpasswd", "auth_htpasswd": "/etc/htpasswd"}, REFUSED),
])
def test_which_mode_the_ui_runs_in(flags: dict[str, str], mode: str, tmp_path: Path) -> None:
    assert ui_mode(load_config(None, {"data_dir": str(tmp_path), **flags}, {})) == mode



@pytest.mark.parametrize("seconds", ["10", "99999999", "soon"])
def test_a_session_lifetime_out_of_range_stops_the_start(seconds: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="session_lifetime_seconds"):
        load_config(None, {"data_dir": str(tmp_path)}, {"CARGOHOLD_UI_SESSION_LIFETIME_SECONDS": seconds})
