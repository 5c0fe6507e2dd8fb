"""Distribution's token protocol over HTTP: challenges, the token endpoint (GET and OAuth2 POST), and
every way a credential or token must be refused, each with its status and code."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cargohold.access_model import Role
from cargohold.auth.access import Access
from cargohold.auth.jwt import encode, new_claims
from cargohold.auth.keys import SigningKey, parse_signing_key
from cargohold.auth.passwords import hash_password, secret_digest
from tests.api.helpers import codes, sha256

from .world import PRIVATE, PUBLIC, SECRETS, World, basic, decode_claims

LIBTRUST_KID = re.compile(r"^[A-Z2-7]{4}(:[A-Z2-7]{4}){11}$")


def challenge(response: httpx.Response) -> dict[str, str]:
    header = response.headers["www-authenticate"]
    scheme, _, rest = header.partition(" ")
    assert scheme == "Bearer"
    return dict(re.findall(r'(\w+)="([^"]*)"', rest))


def server_key(world: World) -> SigningKey:
    return parse_signing_key(world.server.token_key_pem(), "the server's database")


def forged(world: World, key: SigningKey | None = None, **changes: Any) -> str:
    """A token for writer on PRIVATE (pull, push), signed with ``key`` (default: the server's), claims changed."""
    store = world.store()
    writer = store.require("writer")
    store.close()
    claims = new_claims(issuer="cargohold", subject="writer", audience="cargohold", lifetime=300,
                        accesses=[Access("repository", PRIVATE, "pull"), Access("repository", PRIVATE, "push")],
                        generation=writer.credentials_generation)
    claims.update(changes)
    return encode(claims, key or server_key(world))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# challenges


def test_base_endpoint_challenges_callers_without_a_token(world: World) -> None:
    with world.bare() as c:
        response = c.get("/v2/")
    assert response.status_code == 401
    assert codes(response) == ["UNAUTHORIZED"]
    assert challenge(response) == {"realm": f"{world.url}/auth/token", "service": "cargohold"}
    for who in (None, "other"):
        with world.client(who) as c:
            assert c.get("/v2/").status_code == 200


@pytest.mark.parametrize("repository", [PRIVATE, "owner/does-not-exist", "nobody/nothing"])
def test_anonymous_callers_get_the_challenge_for_private_and_missing_repositories(
    world: World, repository: str
) -> None:
    with world.bare() as c:
        response = c.get(f"/v2/{repository}/tags/list")
    assert response.status_code == 401, response.text
    assert codes(response) == ["UNAUTHORIZED"]
    assert challenge(response)["scope"] == f"repository:{repository}:pull"
    with world.client(None, f"repository:{repository}:pull") as c:  # an anonymous token changes nothing
        response = c.get(f"/v2/{repository}/tags/list")
    assert response.status_code == 401
    assert challenge(response)["error"] == "insufficient_scope"


def test_public_repositories_need_no_token_to_pull(world: World) -> None:
    with world.bare() as c:
        assert "v1" in c.get(f"/v2/{PUBLIC}/tags/list").json()["tags"]
        assert c.get(f"/v2/{PUBLIC}/manifests/v1").status_code == 200
        pushed = c.post(f"/v2/{PUBLIC}/blobs/uploads/")
    assert pushed.status_code == 401
    assert challenge(pushed)["scope"] == f"repository:{PUBLIC}:pull,push"


@pytest.mark.parametrize("repository", [PRIVATE, "owner/does-not-exist"])
def test_logged_in_callers_without_rights_cannot_tell_missing_from_private(world: World, repository: str) -> None:
    with world.client("other", f"repository:{repository}:pull") as c:
        response = c.get(f"/v2/{repository}/tags/list")
    assert response.status_code == 403
    assert response.json() == {"errors": [{"code": "DENIED", "message": "requested access to the resource is denied"}]}


# the token endpoint


def test_token_grants_the_intersection_of_requested_and_held_actions(world: World) -> None:
    response = world.token_response(
        "reader", f"repository:{PRIVATE}:pull,push,delete", "repository:owner/elsewhere:pull", "registry:catalog:*"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["issued_at"])
    assert "refresh_token" not in body
    assert response.headers["cache-control"] == "no-store"
    header = json.loads(base64.urlsafe_b64decode(body["token"].split(".")[0] + "=="))
    assert header["alg"] == "ES256" and header["typ"] == "JWT"
    assert header["kid"] == server_key(world).kid and LIBTRUST_KID.match(header["kid"])
    claims = decode_claims(body["token"])
    assert claims["iss"] == "cargohold" and claims["aud"] == "cargohold" and claims["sub"] == "reader"
    assert claims["exp"] - claims["iat"] == 300 and claims["nbf"] == claims["iat"]
    assert claims["jti"]
    assert claims["access"] == [
        {"type": "registry", "name": "catalog", "actions": ["*"]},
        {"type": "repository", "name": PRIVATE, "actions": ["pull"]},
    ]


def test_star_asks_for_every_action_held(world: World) -> None:
    claims = decode_claims(world.token("writer", f"repository:{PRIVATE}:*", "repository:acme/tools:*"))
    assert claims["access"] == [
        {"type": "repository", "name": "acme/tools", "actions": ["delete", "pull", "push"]},
        {"type": "repository", "name": PRIVATE, "actions": ["delete", "pull", "push"]},
    ]


def test_anonymous_tokens_cover_public_repositories_only(world: World) -> None:
    claims = decode_claims(world.token(None, f"repository:{PUBLIC}:pull,push", f"repository:{PRIVATE}:pull",
                                       "registry:catalog:*"))
    assert claims["sub"] == ""
    assert claims["access"] == [{"type": "repository", "name": PUBLIC, "actions": ["pull"]}]


def test_token_endpoint_refuses_other_services_and_bad_scopes(world: World) -> None:
    response = httpx.get(f"{world.url}/auth/token", params={"service": "elsewhere"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    response = httpx.get(f"{world.url}/auth/token", params={"service": "cargohold", "scope": "repository-only"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_oauth2_password_then_refresh_token(world: World) -> None:
    form = {"grant_type": "password", "username": "writer", "password": SECRETS["writer"],
            "service": "cargohold", "client_id": "tests", "access_type": "offline",
            "scope": f"repository:{PRIVATE}:pull"}
    response = httpx.post(f"{world.url}/auth/token", data=form)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scope"] == f"repository:{PRIVATE}:pull"
    refresh = body["refresh_token"]
    assert len(refresh) >= 40
    form = {"grant_type": "refresh_token", "refresh_token": refresh, "service": "cargohold", "client_id": "tests",
            "scope": f"repository:{PRIVATE}:pull,push repository:acme/x:push"}
    response = httpx.post(f"{world.url}/auth/token", data=form)
    assert response.status_code == 200, response.text
    assert response.json()["refresh_token"] == refresh
    assert response.json()["scope"] == f"repository:{PRIVATE}:pull,push repository:acme/x:push"
    with httpx.Client(base_url=world.url, headers={"Authorization": f"Bearer {response.json()['token']}"}) as c:
        assert c.post(f"/v2/{PRIVATE}/blobs/uploads/").status_code == 202


def test_offline_token_on_get_gives_a_refresh_token(world: World) -> None:
    response = world.token_response("reader", f"repository:{PRIVATE}:pull", offline_token="true", client_id="t")
    assert response.json()["refresh_token"]


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"grant_type": "password", "username": "writer", "password": "x", "client_id": "t"}, 401, "invalid_grant"),
        ({"grant_type": "password", "username": "writer", "password": SECRETS["writer"]}, 400, "invalid_request"),
        ({"grant_type": "refresh_token", "refresh_token": "made-up", "client_id": "t"}, 401, "invalid_grant"),
        ({"grant_type": "authorization_code", "code": "x", "client_id": "t"}, 400, "unsupported_grant_type"),
    ],
)
def test_oauth2_errors(world: World, form: dict[str, str], status: int, error: str) -> None:
    response = httpx.post(f"{world.url}/auth/token", data={"service": "cargohold", **form})
    assert response.status_code == status, response.text
    assert response.json()["error"] == error


# refusals: each credential or token a registry must not accept


def test_wrong_password(world: World) -> None:
    response = httpx.get(f"{world.url}/auth/token", params={"service": "cargohold"},
                         headers={"Authorization": basic("writer", "not-the-password")})
    assert response.status_code == 401
    assert codes(response) == ["UNAUTHORIZED"]
    assert response.headers["www-authenticate"].startswith("Basic ")


@pytest.mark.parametrize("name", ["nobody", "acme"])  # no such account; an organization cannot log in
def test_unknown_accounts_look_like_wrong_passwords(world: World, name: str) -> None:
    response = httpx.get(f"{world.url}/auth/token", headers={"Authorization": basic(name, "whatever-1")})
    assert response.status_code == 401
    assert response.json()["errors"][0]["message"] == "invalid username or password"


def test_disabled_user(world: World) -> None:
    response = world.token_response("gone", f"repository:{PUBLIC}:pull")
    assert response.status_code == 401
    assert response.json()["errors"] == [{"code": "UNAUTHORIZED", "message": "account disabled"}]


def refused(world: World, token: str, method: str = "GET", path: str = f"/v2/{PRIVATE}/tags/list") -> httpx.Response:
    response = httpx.request(method, f"{world.url}{path}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert codes(response) == ["UNAUTHORIZED"]
    return response


BAD_TOKENS: dict[str, Callable[[World], str]] = {
    "expired": lambda w: forged(w, iat=int(time.time()) - 900, nbf=int(time.time()) - 900,
                                exp=int(time.time()) - 600),
    "not yet valid": lambda w: forged(w, nbf=int(time.time()) + 600),
    "another service": lambda w: forged(w, aud="another-registry"),
    "another issuer": lambda w: forged(w, iss="someone-else"),
    "signed by another key": lambda w: forged(w, SigningKey.of(ec.generate_private_key(ec.SECP256R1()))),
    "another key under our kid": lambda w: _with_kid(forged(w, SigningKey.of(ec.generate_private_key(
        ec.SECP256R1()))), server_key(w).kid),
    "tampered payload": lambda w: _tampered(w.token("reader", f"repository:{PRIVATE}:pull")),
    "alg none": lambda w: _unsigned(forged(w)),
    "HS256 with the public key": lambda w: _hs256(forged(w), w),
    "garbage": lambda w: "not.a.token",
}


def _with_kid(token: str, kid: str) -> str:
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(header + "=="))
    return ".".join([b64(json.dumps({**data, "kid": kid}).encode()), payload, signature])


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["access"][0]["actions"] = ["pull", "push"]
    return ".".join([header, b64(json.dumps(claims).encode()), signature])


def _unsigned(token: str) -> str:
    _, payload, _ = token.split(".")
    return ".".join([b64(b'{"typ":"JWT","alg":"none"}'), payload, ""])


def _hs256(token: str, world: World) -> str:
    import hashlib
    import hmac

    from cryptography.hazmat.primitives import serialization

    key = server_key(world).key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    _, payload, _ = token.split(".")
    header = {"typ": "JWT", "alg": "HS256", "kid": server_key(world).kid}
    signing_input = b64(json.dumps(header).encode()) + "." + payload
    return signing_input + "." + b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_untrustworthy_tokens_are_refused(world: World, case: str) -> None:
    response = refused(world, BAD_TOKENS[case](world))
    assert challenge(response)["error"] == "invalid_token"


def test_a_forged_token_with_the_server_key_works_so_the_refusals_above_mean_something(world: World) -> None:
    response = httpx.get(f"{world.url}/v2/{PRIVATE}/tags/list", headers={"Authorization": f"Bearer {forged(world)}"})
    assert response.status_code == 200


def test_token_for_another_repository(world: World) -> None:
    response = refused(world, world.token("writer", f"repository:{PUBLIC}:pull,push"))
    assert challenge(response) == {
        "realm": f"{world.url}/auth/token", "service": "cargohold",
        "scope": f"repository:{PRIVATE}:pull", "error": "insufficient_scope",
    }


def test_token_with_fewer_actions(world: World) -> None:
    token = world.token("writer", f"repository:{PRIVATE}:pull")
    response = refused(world, token, "POST", f"/v2/{PRIVATE}/blobs/uploads/")
    assert challenge(response)["scope"] == f"repository:{PRIVATE}:pull,push"
    assert challenge(response)["error"] == "insufficient_scope"
    response = refused(world, token, "DELETE", f"/v2/{PRIVATE}/manifests/{sha256(b'x')}")
    assert challenge(response)["scope"] == f"repository:{PRIVATE}:delete"


def test_robot_token_after_rotation(world: World) -> None:
    store = world.store()
    try:
        store.create_robot("owner", "rotating", secret_digest("chr_first-token-000000000000000000"))
        store.grant(PRIVATE, "owner+rotating", Role.READ)
        old = httpx.get(f"{world.url}/auth/token", params={"scope": f"repository:{PRIVATE}:pull"},
                        headers={"Authorization": basic("owner+rotating", "chr_first-token-000000000000000000")})
        assert old.status_code == 200
        assert refused_or_ok(world, old.json()["token"]) == 200
        time.sleep(1.05)  # tokens are void when issued before the change; iat has one-second resolution
        store.set_secret("owner+rotating", secret_digest("chr_second-token-00000000000000000"))
        again = httpx.get(f"{world.url}/auth/token",
                          headers={"Authorization": basic("owner+rotating", "chr_first-token-000000000000000000")})
        assert again.status_code == 401
        assert codes(again) == ["UNAUTHORIZED"]
        assert challenge(refused(world, old.json()["token"]))["error"] == "invalid_token"
        new = httpx.get(f"{world.url}/auth/token", params={"scope": f"repository:{PRIVATE}:pull"},
                        headers={"Authorization": basic("owner+rotating", "chr_second-token-00000000000000000")})
        assert refused_or_ok(world, new.json()["token"]) == 200
    finally:
        store.delete_account("owner+rotating")
        store.close()


def refused_or_ok(world: World, token: str) -> int:
    return httpx.get(f"{world.url}/v2/{PRIVATE}/tags/list", headers={"Authorization": f"Bearer {token}"}).status_code


def test_disabling_a_user_voids_its_tokens_and_refresh_tokens(world: World) -> None:
    store = world.store()
    try:
        store.create_user("brief", hash_password("brief-password", 4))
        store.grant(PRIVATE, "brief", Role.READ)
        response = httpx.get(f"{world.url}/auth/token",
                             params={"scope": f"repository:{PRIVATE}:pull", "offline_token": "true"},
                             headers={"Authorization": basic("brief", "brief-password")})
        token, refresh = response.json()["token"], response.json()["refresh_token"]
        assert refused_or_ok(world, token) == 200
        store.set_disabled("brief", True)
        refused(world, token)
        form = {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": "t"}
        assert httpx.post(f"{world.url}/auth/token", data=form).status_code == 401
    finally:
        store.delete_account("brief")
        store.close()


def test_basic_credentials_are_not_a_bearer_token(world: World) -> None:
    response = httpx.get(f"{world.url}/v2/{PRIVATE}/tags/list",
                         headers={"Authorization": basic("writer", SECRETS["writer"])})
    assert response.status_code == 401
    assert challenge(response)["scope"] == f"repository:{PRIVATE}:pull"


def test_jwks_publishes_the_signing_key(world: World) -> None:
    keys = httpx.get(f"{world.url}/auth/jwks").json()["keys"]
    assert [(k["kid"], k["kty"], k["crv"], k["alg"]) for k in keys] == [(server_key(world).kid, "EC", "P-256", "ES256")]


def test_mount_needs_pull_on_the_source(world: World) -> None:
    with world.client("owner", f"repository:{PRIVATE}:pull") as c:
        layer = c.get(f"/v2/{PRIVATE}/manifests/v1", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        digest = layer.json()["layers"][0]["digest"]
    with world.client("writer", "repository:acme/mounted:pull,push") as c:  # no pull on PRIVATE in this token
        response = c.post("/v2/acme/mounted/blobs/uploads/", params={"mount": digest, "from": PRIVATE})
    assert response.status_code == 202  # a plain upload instead of a mount, as Distribution does
    with world.client("writer", "repository:acme/mounted:pull,push", f"repository:{PRIVATE}:pull") as c:
        response = c.post("/v2/acme/mounted/blobs/uploads/", params={"mount": digest, "from": PRIVATE})
    assert response.status_code == 201


def test_mount_without_from_only_from_what_the_caller_may_pull(world: World) -> None:
    with world.client("owner", f"repository:{PRIVATE}:pull") as c:
        image = c.get(f"/v2/{PRIVATE}/manifests/v1", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    private_layer = image.json()["layers"][0]["digest"]  # only in PRIVATE
    shared_config = image.json()["config"]["digest"]  # also in the public repository
    unknown = sha256(b"in no repository")
    # `other` may pull no private repository: a blob only there is as unknown to it as one nowhere
    with world.client("other", "repository:other/app:pull,push,delete") as c:
        answers = [c.post("/v2/other/app/blobs/uploads/", params={"mount": d}) for d in (private_layer, unknown)]
        for response in answers:
            assert response.status_code == 202 and response.content == b""
            assert c.delete(response.headers["location"]).status_code == 204
        assert c.head(f"/v2/other/app/blobs/{private_layer}").status_code == 404
        response = c.post("/v2/other/app/blobs/uploads/", params={"mount": shared_config})
        assert response.status_code == 201 and response.headers["docker-content-digest"] == shared_config
        assert c.head(f"/v2/other/app/blobs/{shared_config}").status_code == 200
    # `reader` may pull PRIVATE, so the blob is found there though the token names only the target
    with world.client("reader", "repository:reader/copy:pull,push") as c:
        response = c.post("/v2/reader/copy/blobs/uploads/", params={"mount": private_layer})
        assert response.status_code == 201
        assert c.head(f"/v2/reader/copy/blobs/{private_layer}").status_code == 200
