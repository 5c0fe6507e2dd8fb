"""Logins to the UI: a random token in a cookie, its SHA-256 in the database with the account and a CSRF token.

A session ends when it expires, at logout, or once its account is disabled, deleted or changes its
password (the credentials generation it was made under no longer matches).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Final

from ..access_model import Account
from ..metadata.access import AccessStore
from ..metadata.sql_ui import SqlUiStore, UiSession

SESSION_COOKIE: Final = "cargohold_ui"
#: before a login: the login form's CSRF token, double-submitted (the form's field and this cookie)
LOGIN_COOKIE: Final = "cargohold_ui_login"


def _stored_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same_token(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True, slots=True)
class LiveSession:
    token: str
    account: Account
    csrf: str


class Sessions:
    def __init__(self, store: SqlUiStore, accounts: AccessStore, lifetime_seconds: float) -> None:
        self.store = store
        self.accounts = accounts
        self.lifetime = int(lifetime_seconds)

    async def open(self, account: Account) -> LiveSession:
        token, csrf, now = new_token(), new_token(), int(time.time())
        session = UiSession(account.name, account.credentials_generation, csrf, now + self.lifetime)
        await self.store.create_session(_stored_id(token), session, now)
        return LiveSession(token, account, csrf)

    async def find(self, token: str | None) -> LiveSession | None:
        """The live session of a cookie's token: unexpired, its account enabled and its credentials unchanged."""
        if not token:
            return None
        found = await self.store.session(_stored_id(token), int(time.time()))
        if found is None:
            return None
        account = await self.accounts.account(found.account)
        if account is None or account.disabled or account.credentials_generation != found.credentials_generation:
            return None
        return LiveSession(token, account, found.csrf)

    async def close(self, token: str) -> None:
        await self.store.delete_session(_stored_id(token))
