"""The web UI tests' tools: a chromium through Playwright, and logging in with plain HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import httpx
from playwright.sync_api import Browser, Page, sync_playwright

#: Debian's chromium, never a downloaded one
CHROMIUM: Final = "/usr/bin/chromium"
FLAGS: Final = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SESSION_COOKIE: Final = "cargohold_ui"


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, "no CSRF field on the page"
    return found.group(1)


@contextmanager
def http_login(url: str, name: str, password: str) -> Iterator[httpx.Client]:
    """A client holding a UI session of ``name`` (its cookie), as a browser would get it."""
    with httpx.Client(base_url=url, follow_redirects=False) as client:
        form = client.get("/ui/login")
        assert form.status_code == 200, form.text
        answer = client.post("/ui/login", data={"csrf": csrf_of(form.text), "username": name, "password": password})
        assert answer.status_code == 303, answer.text
        assert client.cookies.get(SESSION_COOKIE)
        yield client


def browser_login(page: Page, url: str, name: str, password: str) -> None:
    page.goto(f"{url}/ui/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    page.click("form.login button[type=submit]")
    page.wait_for_url(f"{url}/ui/repositories")
