"""Building the access controller (and the services its endpoints need) from the server configuration.

``auth: none`` gives :class:`OpenAccess`; ``htpasswd`` a :class:`BasicAccessController`;
``token`` a :class:`TokenAccessController` trusting cargohold's own token
service (whose endpoints, with the admin API's, the API serves at ``/auth/``
and ``/admin/``) and any configured external issuer.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

import httpx

from ..config import ConfigError, ServerConfig
from ..config.proxies import proxied_names
from ..events.log import EventLog
from ..metadata import AccessStore, open_access_store, open_login_failures, open_metadata_store
from .access import AccessController, OpenAccess, writable
from .controller import BasicAccessController, TokenAccessController
from .htpasswd import HtpasswdError, HtpasswdFile
from .jwt import Verifier
from .keys import KeyFileError, VerifyingKey, load_public_keys, parse_jwks
from .login import Authenticator
from .ratelimit import LoginLimiter, LoginLimits
from .stored_keys import token_signing_key
from .tokens import TokenService, TokenSettings

#: how long fetching an external JWKS at start may take
JWKS_TIMEOUT_SECONDS = 10.0


@dataclass
class OwnTokens:
    """cargohold's own token service, and what the admin API checks its callers with."""

    service: TokenService
    store: AccessStore
    login: Authenticator
    verifier: Verifier
    issuer: str


@dataclass
class AccessSetup:
    controller: AccessController
    #: with ``auth: token``: the services behind the token and admin endpoints
    tokens: OwnTokens | None = None


def access_store_for(config: ServerConfig) -> AccessStore:
    """The access store of a data directory whose database is migrated (the migrations create its tables);
    opening the metadata store first refuses a database that is not."""
    os.makedirs(config.data_dir, exist_ok=True)
    meta = open_metadata_store(config.metadata_url)
    asyncio.run(meta.close())
    return open_access_store(config.metadata_url)


def limiter_for(config: ServerConfig) -> LoginLimiter:
    """A limiter over the metadata database, shared by every worker; its database must be migrated."""
    return LoginLimiter(open_login_failures(config.metadata_url), LoginLimits(
        per_account_address=config.auth.login_failures_per_account_address,
        per_address=config.auth.login_failures_per_address, per_account=config.auth.login_failures_per_account,
        max_delay=config.auth.login_delay_max_seconds, window=config.auth.login_window_seconds,
    ))


def external_keys(config: ServerConfig) -> list[VerifyingKey]:
    keys: list[VerifyingKey] = []
    for path in filter(None, (p.strip() for p in config.auth.external_keys.split(","))):
        keys.extend(load_public_keys(path))
    source = config.auth.external_jwks
    if source.startswith(("http://", "https://")):
        try:
            response = httpx.get(source, timeout=JWKS_TIMEOUT_SECONDS, follow_redirects=True)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise ConfigError(f"cannot fetch the JWKS {source}: {exc}") from None
        keys.extend(parse_jwks(response.content))
    elif source:
        try:
            keys.extend(parse_jwks(Path(source).read_bytes()))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the JWKS {source}: {exc}") from None
    return keys


def build_access(config: ServerConfig, events: EventLog | None = None) -> AccessSetup:
    """The controller for ``config.auth.mode``; the database must be migrated already.

    Logins and the tokens issued are recorded in ``events`` (the audit log).
    """
    read_only = proxied_names(config.proxies) if config.proxies else writable
    try:
        if config.auth.mode == "htpasswd":
            return AccessSetup(BasicAccessController(HtpasswdFile(config.auth.htpasswd), limiter_for(config),
                                                     events=events, read_only=read_only))
        if config.auth.mode != "token":
            return AccessSetup(OpenAccess())
        key = token_signing_key(config)
    except (HtpasswdError, KeyFileError, OSError) as exc:
        raise ConfigError(str(exc)) from None
    store = open_access_store(config.metadata_url)
    verifier = Verifier(config.auth.service)
    verifier.trust(config.auth.issuer, [key.public])
    if config.auth.external_issuer:
        try:
            verifier.trust(config.auth.external_issuer, external_keys(config))
        except KeyFileError as exc:
            raise ConfigError(str(exc)) from None
    login = Authenticator(store, limiter_for(config), config.auth.password_cost, events)
    settings = TokenSettings(
        config.auth.issuer, config.auth.service, config.auth.token_lifetime, config.auth.refresh_lifetime
    )
    controller = TokenAccessController(verifier, store, config.auth.issuer, config.auth.service,
                                       config.auth.token_realm, read_only)
    tokens = OwnTokens(TokenService(settings, key, store, login, events, read_only), store, login, verifier,
                       config.auth.issuer)
    return AccessSetup(controller, tokens)
