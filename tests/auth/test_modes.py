"""The other ways to run access control: an htpasswd file, an external token service, and the
failed-login limits; and what must never reach the log."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import bcrypt
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cargohold.auth.access import Access
from cargohold.auth.jwt import encode, new_claims
from cargohold.auth.keys import SigningKey, jwks, parse_signing_key
from cargohold.client import Credentials, OCILayout, RegistryClient, StaticKeychain, TransportOptions
from cargohold.client.cache import BlobCache
from cargohold.client.pull import pull, push
from cargohold.reference import Reference
from tests.api.helpers import codes
from tests.client.images import build_image, write_layout
from tests.support.servers import SRC, cargohold

from .world import FAST_ENV, PRIVATE, PUBLIC, ROBOT, SECRETS, World, basic, populate, push_image, store_for

# htpasswd


def test_htpasswd_mode(tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    hashed = bcrypt.hashpw(b"basic-password", bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$")
    htpasswd.write_text(f"ci:{hashed}\n")
    with cargohold(tmp_path, "--auth", "htpasswd", "--htpasswd", str(htpasswd), env=FAST_ENV) as server:
        response = httpx.get(f"{server.url}/v2/")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Basic realm="cargohold"'
        assert httpx.get(f"{server.url}/v2/", auth=("ci", "wrong")).status_code == 401
        assert httpx.get(f"{server.url}/v2/", auth=("ci", "basic-password")).status_code == 200
        image = build_image((1200,))
        ref = Reference.parse(f"{server.host}/any/where:v1")
        options = TransportOptions(insecure_all=True, retries=1, backoff=0.01)
        with RegistryClient(keychain=StaticKeychain(Credentials("ci", "basic-password")), options=options) as c:
            push(c, write_layout(tmp_path / "src", image, "v1"), "v1", ref, cache=BlobCache(tmp_path / "c"))
            pull(c, ref, OCILayout(tmp_path / "dst"), tag="v1", cache=BlobCache(tmp_path / "c2"))
            assert list(c.catalog(server.host)) == ["any/where"]
        time.sleep(0.01)
        htpasswd.write_text("# nobody\n")  # edits apply without a restart, cached logins included
        assert httpx.get(f"{server.url}/v2/", auth=("ci", "basic-password")).status_code == 401
        assert httpx.get(f"{server.url}/auth/token").status_code == 404  # no token service in this mode


def test_htpasswd_mode_needs_a_readable_file(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cargohold.cli.main", "serve", "--data-dir", str(tmp_path / "d"), "--listen",
         "127.0.0.1:1", "--auth", "htpasswd", "--htpasswd", str(tmp_path / "missing")],
        capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "cannot read" in result.stderr


# an external token service


def test_tokens_of_an_external_issuer(tmp_path: Path) -> None:
    by_jwks = SigningKey.of(ec.generate_private_key(ec.SECP256R1()))
    by_pem = SigningKey.of(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    (tmp_path / "jwks.json").write_text(json.dumps(jwks([by_jwks.public])))
    (tmp_path / "key.pem").write_bytes(by_pem.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    env = {**FAST_ENV, "CARGOHOLD_AUTH_EXTERNAL_ISSUER": "https://idp.example", "CARGOHOLD_AUTH_EXTERNAL_JWKS":
           str(tmp_path / "jwks.json"), "CARGOHOLD_AUTH_EXTERNAL_KEYS": str(tmp_path / "key.pem")}
    store = store_for(tmp_path / "data")
    populate(store)
    store.close()

    def external(key: SigningKey, *accesses: Access, **changes: object) -> dict[str, str]:
        claims = new_claims(issuer="https://idp.example", subject="someone@idp", audience="cargohold",
                            lifetime=300, accesses=accesses)
        claims.update(changes)
        return {"Authorization": f"Bearer {encode(claims, key)}"}

    pull_private = Access("repository", PRIVATE, "pull")
    with cargohold(tmp_path, "--auth", "token", env=env) as server:
        world = World(server)
        with world.client("owner", f"repository:{PRIVATE}:pull,push") as c:
            push_image(c, PRIVATE, "v1")
        for key in (by_jwks, by_pem):
            assert httpx.get(f"{server.url}/v2/{PRIVATE}/tags/list",
                             headers=external(key, pull_private)).json()["tags"] == ["v1"]
        response = httpx.post(f"{server.url}/v2/{PRIVATE}/blobs/uploads/", headers=external(by_jwks, pull_private))
        assert response.status_code == 401  # the external service decides: no push in the token, no push
        assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
        catalog = httpx.get(f"{server.url}/v2/_catalog", headers=external(by_jwks, pull_private))
        assert catalog.status_code == 401  # no catalog scope from an external issuer, no catalog
        catalog = httpx.get(f"{server.url}/v2/_catalog",
                            headers=external(by_jwks, Access("registry", "catalog", "*")))
        assert PRIVATE in catalog.json()["repositories"]
        for changes in ({"aud": "elsewhere"}, {"iss": "https://other.example"}, {"exp": int(time.time()) - 120}):
            response = httpx.get(f"{server.url}/v2/{PRIVATE}/tags/list",
                                 headers=external(by_jwks, pull_private, **changes))
            assert response.status_code == 401, changes
        stranger = SigningKey.of(ec.generate_private_key(ec.SECP256R1()))
        assert httpx.get(f"{server.url}/v2/{PRIVATE}/tags/list",
                         headers=external(stranger, pull_private)).status_code == 401
        own_key = parse_signing_key(server.token_key_pem(), "the server's database")
        assert httpx.get(f"{server.url}/v2/{PRIVATE}/tags/list",
                         headers=external(own_key, pull_private)).status_code == 401  # keys belong to their issuer


# failed-login limits


def from_address(address: str) -> httpx.Client:
    """A client whose connections come from ``address`` (any of 127.0.0.0/8 reaches the server on Linux)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def test_failed_logins_lock_out_the_guessing_address_not_the_account(tmp_path: Path) -> None:
    env = {**FAST_ENV, "CARGOHOLD_LOGIN_FAILURES_PER_ACCOUNT_ADDRESS": "3", "CARGOHOLD_LOGIN_FAILURES_PER_ADDRESS": "5",
           "CARGOHOLD_LOGIN_FAILURES_PER_ACCOUNT": "4", "CARGOHOLD_LOGIN_DELAY_MAX_SECONDS": "1",
           "CARGOHOLD_LOGIN_WINDOW_SECONDS": "600"}
    store = store_for(tmp_path / "data")
    populate(store)
    store.close()
    with (cargohold(tmp_path, "--auth", "token", env=env) as server, from_address("127.0.0.1") as owner,
          from_address("127.0.0.2") as attacker, from_address("127.0.0.3") as accomplice):
        def login(client: httpx.Client, name: str, secret: str) -> httpx.Response:
            return client.get(f"{server.url}/auth/token", headers={"Authorization": basic(name, secret)})

        assert [login(attacker, "writer", f"guess-{n}").status_code for n in range(3)] == [401, 401, 401]
        limited = login(attacker, "writer", SECRETS["writer"])  # the right password does not get through either
        assert limited.status_code == 429
        assert codes(limited) == ["TOOMANYREQUESTS"]
        retry = int(limited.headers["retry-after"])
        assert 500 < retry <= 600
        assert limited.json()["errors"][0]["message"] == f"too many failed logins; try again in {retry} s"
        form = {"grant_type": "password", "username": "writer", "password": SECRETS["writer"], "client_id": "t"}
        assert attacker.post(f"{server.url}/auth/token", data=form).status_code == 429
        assert login(owner, "writer", SECRETS["writer"]).status_code == 200  # the owner, elsewhere, logs in
        # failures from many addresses slow the account's logins down, for everyone, but never refuse them
        assert login(accomplice, "writer", "guess-4").status_code == 401
        started = time.monotonic()
        assert login(owner, "writer", SECRETS["writer"]).status_code == 200
        assert time.monotonic() - started >= 0.25
        assert login(accomplice, "writer", "guess-5").status_code == 401
        started = time.monotonic()
        assert login(owner, "writer", SECRETS["writer"]).status_code == 200
        assert time.monotonic() - started >= 0.5
        # an address that has failed too often is refused whatever it tries
        assert login(attacker, "reader", SECRETS["reader"]).status_code == 200
        assert [login(attacker, "nobody", "guess").status_code for _ in range(2)] == [401, 401]
        assert login(attacker, "reader", SECRETS["reader"]).status_code == 429
        assert login(owner, "reader", SECRETS["reader"]).status_code == 200
        admin = attacker.get(f"{server.url}/admin/v1/whoami", headers={"Authorization": basic("root", SECRETS["root"])})
        assert admin.status_code == 429
        admin = owner.get(f"{server.url}/admin/v1/whoami", headers={"Authorization": basic("root", SECRETS["root"])})
        assert admin.status_code == 200


# the log


def test_no_secret_reaches_the_log(world: World) -> None:
    issued = [
        world.token_response("writer", f"repository:{PRIVATE}:pull", offline_token="true").json(),
        world.token_response(ROBOT, f"repository:{PRIVATE}:pull").json(),
        httpx.post(f"{world.url}/auth/token", data={"grant_type": "password", "username": "reader",
                   "password": SECRETS["reader"], "client_id": "t", "access_type": "offline"}).json(),
    ]
    refresh = issued[0]["refresh_token"]
    issued.append(httpx.post(f"{world.url}/auth/token", data={
        "grant_type": "refresh_token", "refresh_token": refresh, "client_id": "t"}).json())
    world.token_response("writer", "repository:x/y:pull", password="in-the-query?")  # a confused client
    httpx.get(f"{world.url}/auth/token", headers={"Authorization": basic("writer", "a-wrong-guess")})
    made = httpx.post(f"{world.url}/admin/v1/users", json={"name": "logtest", "password": "log-test-password"},
                      headers={"Authorization": basic("root", SECRETS["root"])})
    assert made.status_code == 200
    httpx.delete(f"{world.url}/admin/v1/users/logtest", headers={"Authorization": basic("root", SECRETS["root"])})
    with httpx.Client(base_url=world.url, headers={"Authorization": f"Bearer {issued[0]['token']}"}) as c:
        c.get(f"/v2/{PRIVATE}/tags/list")
    with world.client(None, f"repository:{PUBLIC}:pull") as c:
        c.get(f"/v2/{PUBLIC}/tags/list")
    log = world.server.log()
    assert '"event": "login_failed", "account": "writer"' in log
    secrets = [*SECRETS.values(), "a-wrong-guess", "log-test-password", "in-the-query?", refresh]
    secrets += [body["token"] for body in issued] + [body["token"].split(".")[2] for body in issued]
    for secret in secrets:
        assert secret not in log
    assert "Authorization" not in log and "Bearer " not in log and "Basic " not in log
