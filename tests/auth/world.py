"""The auth tests' world: a token-auth cargohold, its cast of accounts, and ways to act as each."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from cargohold.access_model import Role
from cargohold.auth.passwords import hash_password, secret_digest
from cargohold.auth.setup import access_store_for
from cargohold.config import load_config
from cargohold.metadata import AccessStore, migrate
from tests.api.helpers import OCI_MANIFEST, image_manifest, put_manifest, sha256
from tests.support.servers import SRC, CargoholdServer

PUBLIC = "owner/public-app"
PRIVATE = "owner/private-app"
ROBOT = "owner+ci"
ROBOT_TOKEN = "chr_robot-token-for-tests-0123456789abcdef"
SECRETS = {
    "root": "root-password-1",
    "owner": "owner-password-1",
    "reader": "reader-password-1",
    "writer": "writer-password-1",
    "admin": "admin-password-1",
    "other": "other-password-1",
    "gone": "gone-password-1",
    ROBOT: ROBOT_TOKEN,
}
#: bcrypt's cheapest cost keeps logins fast; the limits are high so tests do not lock each other out
FAST_ENV = {
    "CARGOHOLD_PASSWORD_COST": "4",
    "CARGOHOLD_LOGIN_FAILURES_PER_ACCOUNT": "1000",
    "CARGOHOLD_LOGIN_FAILURES_PER_ACCOUNT_ADDRESS": "1000",
    "CARGOHOLD_LOGIN_FAILURES_PER_ADDRESS": "1000",
}


def basic(name: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()


class SyncAccessStore:
    """An access store for setting a test's world up from outside an event loop: each call is awaited
    to its end in an event loop of its own (``inner`` is the store itself)."""

    def __init__(self, inner: AccessStore) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.inner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return asyncio.run(method(*args, **kwargs))

        return call


def store_for(data_dir: Path, database_url: str | None = None) -> SyncAccessStore:
    """The access store of a data directory, or of ``database_url`` (migrations run, as the server would)."""
    database = {"database_url": database_url} if database_url else {}
    config = load_config(None, {"data_dir": str(data_dir), **database}, {})
    data_dir.mkdir(parents=True, exist_ok=True)
    migrate(config.metadata_url)
    return SyncAccessStore(access_store_for(config))


def populate(store: SyncAccessStore) -> None:
    """The cast: see :mod:`tests.auth.conftest`."""
    for name in ("root", "owner", "reader", "writer", "admin", "other", "gone"):
        store.create_user(name, hash_password(SECRETS[name], 4), superuser=name == "root")
    store.set_disabled("gone", True)
    store.create_robot("owner", "ci", secret_digest(ROBOT_TOKEN))
    for repository in (PUBLIC, PRIVATE):
        store.grant(repository, "reader", Role.READ)
        store.grant(repository, "writer", Role.WRITE)
        store.grant(repository, "admin", Role.ADMIN)
        store.grant(repository, ROBOT, Role.WRITE)
    store.set_public(PUBLIC, True)
    store.create_organization("acme", ["owner"])
    store.create_team("acme", "devs")
    store.set_member("acme/devs", "writer", True)
    store.grant("acme/*", "acme/devs", Role.WRITE)


def admin_cli(data_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``cargohold admin --data-dir DATA ARGS...``"""
    return subprocess.run(
        [sys.executable, "-m", "cargohold.cli.main", "admin", "--data-dir", str(data_dir), *args],
        input=stdin, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(SRC), **FAST_ENV},
    )


def decode_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


@dataclass
class World:
    server: CargoholdServer

    @property
    def url(self) -> str:
        return self.server.url

    def store(self) -> SyncAccessStore:
        """The server's access store (close it after use)."""
        return store_for(self.server.data_dir, self.server.database_url)

    def database_options(self) -> list[str]:
        """The command-line options that name the server's metadata database (none for SQLite)."""
        return ["--database-url", self.server.database_url] if self.server.database_url else []

    def token_response(self, who: str | None, *scopes: str, **params: str) -> httpx.Response:
        headers = {"Authorization": basic(who, SECRETS[who])} if who else {}
        query: list[tuple[str, str]] = [("service", "cargohold"), *(("scope", s) for s in scopes), *params.items()]
        return httpx.get(f"{self.url}/auth/token", params=query, headers=headers, timeout=30)

    def token(self, who: str | None, *scopes: str) -> str:
        response = self.token_response(who, *scopes)
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token

    def client(self, who: str | None, *scopes: str) -> httpx.Client:
        """An HTTP client carrying a token for ``scopes`` (anonymous token for who=None)."""
        return httpx.Client(base_url=self.url, timeout=30,
                            headers={"Authorization": f"Bearer {self.token(who, *scopes)}"})

    def bare(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


def push_image(client: httpx.Client, repo: str, tag: str, seed: str = "") -> str:
    """Push a small image with ``client``; returns the manifest digest."""
    raw = image_manifest(client, repo, layers=1, seed=seed or tag)
    response = put_manifest(client, repo, tag, raw, OCI_MANIFEST)
    assert response.status_code == 201, response.text
    return sha256(raw)
