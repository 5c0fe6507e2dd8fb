"""Checking a name and password (or robot token) against the access store, with rate limiting.

Every failure answers the same 401 "invalid username or password" whatever
the reason (no such account, wrong secret, an organization's name), except a
disabled account given its right password, which is told so. The reason goes
to the ``cargohold.auth`` log with the name and client address, never the
secret. Failed attempts count towards :class:`LoginLimiter`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from typing import Final

from ..access_model import Account, AccountKind
from ..errcodes import Unauthorized
from ..events import Action, Event
from ..events.log import EventLog
from ..events.model import Result
from ..metadata.access import AccessStore
from ..metrics import recorder as metrics
from .jwt import VerifiedToken
from .passwords import secret_matches, verify_password
from .ratelimit import LoginLimiter

log: Final = logging.getLogger("cargohold.auth")


class InvalidCredentials(Unauthorized):
    """Unknown account or wrong password/token (the caller is not told which)."""

    def __init__(self, headers: dict[str, str] | None = None) -> None:
        super().__init__("invalid username or password", headers=headers)


class AccountDisabled(Unauthorized):
    """Right credentials, but the account is disabled."""

    def __init__(self, headers: dict[str, str] | None = None) -> None:
        super().__init__("account disabled", headers=headers)


class MalformedCredentials(Unauthorized):
    """An ``Authorization: Basic`` header that does not decode to ``name:secret``."""

    def __init__(self, headers: dict[str, str] | None = None) -> None:
        super().__init__("malformed basic credentials", headers=headers)


def parse_basic(header: str) -> tuple[str, str] | None:
    """``(name, secret)`` from ``Basic base64(name:secret)``; None if the scheme is not Basic."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise MalformedCredentials() from None
    name, sep, secret = decoded.partition(":")
    if not sep or not name:
        raise MalformedCredentials()
    return name, secret


def audit(event: str, **fields: object) -> None:
    """One JSON line on the ``cargohold.auth`` logger (never give it a secret)."""
    log.info(json.dumps({"event": event, **fields}))
    if event == "login_failed":
        metrics.login_failed()


def account_kind(name: str) -> str:
    """The ``actor_kind`` of an account name: robots are ``owner+name``."""
    return "robot" if "+" in name else "user"


async def record_login(events: EventLog | None, name: str, ok: bool, reason: str = "") -> None:
    """The audit entry of a login (its own statement: no change is made with it); never the secret."""
    if events is not None:
        await events.add_event(Event.now(
            Action.LOGIN, actor=name, actor_kind=account_kind(name), result=Result.OK if ok else Result.DENIED,
            detail={"reason": reason} if reason else {},
        ))


async def token_account(store: AccessStore, token: VerifiedToken) -> Account | None:
    """The account behind a token of cargohold's own service, if its credentials are still those the
    token was issued under (same generation; not disabled, not deleted); else None."""
    account = await store.account(token.subject)
    if account is None or account.disabled or token.generation != account.credentials_generation:
        return None
    return account


class Authenticator:
    """Logs accounts of the store in."""

    def __init__(
        self, store: AccessStore, limiter: LoginLimiter, password_cost: int, events: EventLog | None = None
    ) -> None:
        self.store = store
        self.limiter = limiter
        self.password_cost = password_cost
        #: where each login, accepted or refused, is recorded (the audit log)
        self.events = events

    async def login(self, name: str, secret: str, client: str, challenge: dict[str, str] | None = None) -> Account:
        """The account for these credentials, or :class:`InvalidCredentials` / :class:`AccountDisabled`
        (with ``challenge`` as their headers), or TooManyRequests."""
        address = client.rsplit(":", 1)[0]
        await self.limiter.check(name, address)
        found = await self.store.credentials(name)
        account, stored = found if found is not None else (None, None)
        if account is not None and account.kind is AccountKind.ROBOT:
            ok = secret_matches(secret, stored)
        elif account is not None and account.kind is AccountKind.USER:
            ok = await asyncio.to_thread(verify_password, secret, stored, self.password_cost)
        else:
            await asyncio.to_thread(verify_password, secret, None, self.password_cost)
            ok = False
        if not ok or account is None:
            await self.limiter.failed(name, address)
            reason = ("unknown account" if account is None else "wrong secret" if account.kind is not
                      AccountKind.ORGANIZATION else "organizations do not log in")
            audit("login_failed", account=name, client=address, reason=reason)
            await record_login(self.events, name, False, reason)
            raise InvalidCredentials(challenge)
        if account.disabled:
            await self.limiter.failed(name, address)
            audit("login_failed", account=name, client=address, reason="disabled")
            await record_login(self.events, name, False, "disabled")
            raise AccountDisabled(challenge)
        await record_login(self.events, name, True)
        return account
