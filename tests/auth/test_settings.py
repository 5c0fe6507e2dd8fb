"""Access-control settings: accepted from YAML, environment and flags; contradictions refused; seen to act."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from cargohold.auth.passwords import hash_password
from cargohold.config import ConfigError, load_config
from tests.support.servers import cargohold

from .world import FAST_ENV, basic, decode_claims, store_for


def test_auth_settings_from_every_source(tmp_path: Path) -> None:
    file = tmp_path / "c.yml"
    file.write_text("auth: token\nauth_service: registry.example\npassword_cost: 10\n")
    config = load_config(None, {"config": str(file)}, {"CARGOHOLD_AUTH_TOKEN_LIFETIME": "600"})
    assert (config.auth.mode, config.auth.service, config.auth.password_cost, config.auth.token_lifetime) == (
        "token", "registry.example", 10, 600)
    assert config.token_key_path.endswith("auth/token-key.pem")
    assert load_config(None, {"auth": "htpasswd", "auth_htpasswd": "/h"}, {}).auth.htpasswd == "/h"
    assert load_config(None, {}, {}).auth.mode == "none"
    limits = load_config(None, {}, {"CARGOHOLD_LOGIN_FAILURES_PER_ACCOUNT_ADDRESS": "7",
                                    "CARGOHOLD_LOGIN_DELAY_MAX_SECONDS": "2.5"})
    assert (limits.auth.login_failures_per_account_address, limits.auth.login_failures_per_address,
            limits.auth.login_failures_per_account, limits.auth.login_delay_max_seconds) == (7, 20, 10, 2.5)


@pytest.mark.parametrize(
    "overrides",
    [
        {"auth": "ldap"},
        {"auth": "htpasswd"},
        {"auth_external_jwks": "/jwks.json"},
        {"auth_external_issuer": "https://idp.example"},
        {"auth_external_issuer": "cargohold", "auth_external_keys": "/k.pem"},
        {"auth_token_lifetime": 30},
        {"password_cost": 3},
        {"login_window_seconds": 0},
        {"login_failures_per_account_address": -1},
        {"login_failures_per_account": -1},
        {"login_delay_max_seconds": 61},
    ],
)
def test_contradictory_auth_settings_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        load_config(None, overrides, {})


def test_token_lifetime_is_the_configured_one(tmp_path: Path) -> None:
    store = store_for(tmp_path / "data")
    store.create_user("someone", hash_password("someone-password", 4))
    store.close()
    env = {**FAST_ENV, "CARGOHOLD_AUTH_TOKEN_LIFETIME": "120"}
    with cargohold(tmp_path, "--workers", "1", "--auth", "token", env=env) as server:
        for who in (basic("someone", "someone-password"), None):  # a user's token and an anonymous one
            response = httpx.get(f"{server.url}/auth/token", params={"service": "cargohold"},
                                 headers={"Authorization": who} if who else {})
            assert response.status_code == 200, response.text
            claims = decode_claims(response.json()["token"])
            assert (claims["exp"] - claims["iat"], response.json()["expires_in"]) == (120, 120)
        form = {"grant_type": "password", "username": "someone", "password": "someone-password",
                "service": "cargohold", "client_id": "tests"}
        response = httpx.post(f"{server.url}/auth/token", data=form)
        assert response.status_code == 200, response.text
        claims = decode_claims(response.json()["access_token"])
        assert (claims["exp"] - claims["iat"], response.json()["expires_in"]) == (120, 120)
        bearer = {"Authorization": f"Bearer {response.json()['access_token']}"}
        assert httpx.get(f"{server.url}/v2/", headers=bearer).status_code == 200
