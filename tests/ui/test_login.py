"""Logging in to the UI over TLS, with the registry's login limits: the same limiter and audit as every login."""

from __future__ import annotations

import contextlib
import sqlite3
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server.test_serve import tls_files  # noqa: F401 - the fixture
from tests.support.servers import CargoholdServer, free_port

from .conftest import PASSWORDS, make_accounts
from .support import SESSION_COOKIE, csrf_of

LIMITS = {"CARGOHOLD_PASSWORD_COST": "4", "CARGOHOLD_LOGIN_FAILURES_PER_ACCOUNT_ADDRESS": "2",
          "CARGOHOLD_LOGIN_FAILURES_PER_ADDRESS": "1000", "CARGOHOLD_LOGIN_FAILURES_PER_ACCOUNT": "1000"}


@pytest.fixture()
def tls_registry(tmp_path: Path, tls_files: tuple[Path, Path]) -> Iterator[tuple[CargoholdServer, ssl.SSLContext]]:  # noqa: F811
    cert, key = tls_files
    make_accounts(tmp_path / "data", None)
    server = CargoholdServer(tmp_path / "data", free_port(), ["--auth", "token", "--tls-cert", str(cert),
                                                              "--tls-key", str(key)], LIMITS, scheme="https")
    trust = ssl.create_default_context(cafile=str(cert))
    server.start(verify=trust)
    try:
        yield server, trust
    finally:
        server.stop()


def post_login(client: httpx.Client, name: str, password: str) -> httpx.Response:
    form = client.get("/ui/login")
    return client.post("/ui/login", data={"csrf": csrf_of(form.text), "username": name, "password": password})


def test_over_tls_the_cookies_are_secure(tls_registry: tuple[CargoholdServer, ssl.SSLContext]) -> None:
    server, trust = tls_registry
    with httpx.Client(base_url=server.url, verify=trust) as client:
        form = client.get("/ui/login")
        assert "Secure" in form.headers["set-cookie"]
        answer = client.post("/ui/login", data={"csrf": csrf_of(form.text), "username": "bob",
                                                "password": PASSWORDS["bob"]})
        assert answer.status_code == 303
        session = next(value for name, value in answer.headers.multi_items()
                       if name == "set-cookie" and value.startswith(f"{SESSION_COOKIE}="))
        assert session.endswith("; Secure")


def test_failed_logins_are_limited_and_audited(tls_registry: tuple[CargoholdServer, ssl.SSLContext]) -> None:
    server, trust = tls_registry
    with httpx.Client(base_url=server.url, verify=trust) as client:
        assert [post_login(client, "alice", "wrong").status_code for _ in range(2)] == [401, 401]
        limited = post_login(client, "alice", PASSWORDS["alice"])  # even the right password, for a while
        assert limited.status_code == 429 and "too many failed logins" in limited.text
        assert int(limited.headers["retry-after"]) > 0
        assert SESSION_COOKIE not in client.cookies
        assert post_login(client, "bob", PASSWORDS["bob"]).status_code == 303  # another account is not held up
    with httpx.Client(base_url=server.url, verify=trust, auth=("root", PASSWORDS["root"])) as admin:
        entries = admin.get("/admin/v1/audit", params={"action": "login", "actor": "alice"}).json()["entries"]
        assert [entry["result"] for entry in entries][:2] == ["denied", "denied"]
        assert admin.patch("/admin/v1/users/bob", json={"disabled": True}).status_code < 300
    with httpx.Client(base_url=server.url, verify=trust) as client:
        disabled = post_login(client, "bob", PASSWORDS["bob"])
        assert disabled.status_code == 401 and "account disabled" in disabled.text


def test_a_session_ends_when_it_expires(tls_registry: tuple[CargoholdServer, ssl.SSLContext]) -> None:
    server, trust = tls_registry
    with httpx.Client(base_url=server.url, verify=trust) as client:
        assert post_login(client, "bob", PASSWORDS["bob"]).status_code == 303
        assert client.get("/ui/repositories").status_code == 200
        with contextlib.closing(sqlite3.connect(server.data_dir / "metadata.db")) as db, db:
            (expires_at,) = db.execute("SELECT expires_at FROM ui_sessions WHERE account = 'bob'").fetchone()
            assert abs(expires_at - time.time() - 28800) < 60  # ui.session_lifetime_seconds: 8 hours by default
            db.execute("UPDATE ui_sessions SET expires_at = ?", (int(time.time()) - 1,))
        assert client.get("/ui/repositories").headers["location"].startswith("/ui/login")
