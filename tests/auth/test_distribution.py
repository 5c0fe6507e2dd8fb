"""Distribution 2.8 trusting cargohold's token service: proof that the tokens follow the spec.

Distribution gets ``auth.token`` with cargohold's realm, service, issuer, and the
self-signed certificate cargohold writes for its key as ``rootcertbundle``. It
finds the key by the token's ``kid``, which must therefore be the libtrust key ID
of the certificate's key. Both key types are tried: ES256 (the generated default)
and RS256 (a configured RSA key).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cargohold.client import Credentials, OCILayout, RegistryClient, StaticKeychain, TransportOptions
from cargohold.client.cache import BlobCache
from cargohold.client.pull import pull, push
from cargohold.reference import Reference
from tests.client.images import build_image, write_layout
from tests.interop.tools import Clients, requires_distribution, requires_skopeo
from tests.support.servers import CargoholdServer, cargohold, free_port, stop_process, wait_for_http

from .world import FAST_ENV, PRIVATE, PUBLIC, SECRETS, decode_claims, populate, store_for

pytestmark = [requires_distribution, requires_skopeo]


@dataclass
class Pair:
    cargohold: CargoholdServer
    distribution: str  # host:port
    log: Path


@pytest.fixture(scope="module", params=["ES256", "RS256"])
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp(f"dist-{request.param}")
    store = store_for(tmp / "data")
    populate(store)
    store.close()
    env = dict(FAST_ENV)
    if request.param == "RS256":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (tmp / "rsa.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        env["CARGOHOLD_AUTH_TOKEN_KEY"] = str(tmp / "rsa.pem")
    with cargohold(tmp, "--auth", "token", env=env) as server:
        port = free_port()
        config = tmp / "distribution.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: info}\n"
            f"storage:\n  filesystem: {{rootdirectory: {tmp / 'dist-data'}}}\n  delete: {{enabled: true}}\n"
            f"http:\n  addr: 127.0.0.1:{port}\n  secret: cargohold-auth-tests\n"
            "auth:\n  token:\n"
            f"    realm: {server.url}/auth/token\n"
            "    service: cargohold\n"
            "    issuer: cargohold\n"
            f"    rootcertbundle: {server.data_dir / 'auth' / 'token-cert.pem'}\n"
        )
        log = tmp / "distribution.log"
        with open(log, "ab") as out:
            process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=out, stderr=out)
        try:
            wait_for_http(f"http://127.0.0.1:{port}/v2/", process)
            yield Pair(server, f"127.0.0.1:{port}", log)
        finally:
            stop_process(process)


@pytest.fixture()
def clients(pair: Pair, tmp_path: Path) -> Iterator[Clients]:
    made = Clients(tmp_path / "clients", [pair.distribution, pair.cargohold.host])
    yield made
    made.close()


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dist-image") / "layout"
    write_layout(path, build_image((2000,)), "v1")
    return path


def test_distribution_challenges_with_cargoholds_realm(pair: Pair) -> None:
    response = httpx.get(f"http://{pair.distribution}/v2/{PRIVATE}/tags/list")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        f'Bearer realm="{pair.cargohold.url}/auth/token",service="cargohold",'
        f'scope="repository:{PRIVATE}:pull"'
    )


def test_distribution_accepts_cargohold_tokens(pair: Pair) -> None:
    token = httpx.get(f"{pair.cargohold.url}/auth/token", params={"service": "cargohold",
                      "scope": f"repository:{PRIVATE}:pull"},
                      auth=("reader", SECRETS["reader"])).json()["token"]
    response = httpx.get(f"http://{pair.distribution}/v2/{PRIVATE}/tags/list",
                         headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 404  # past authorization: the repository is simply not on this registry
    assert response.json()["errors"][0]["code"] == "NAME_UNKNOWN"
    other = httpx.get(f"{pair.cargohold.url}/auth/token", params={"service": "cargohold",
                      "scope": f"repository:{PRIVATE}:pull"}, auth=("other", SECRETS["other"])).json()["token"]
    assert decode_claims(other)["access"] == []
    response = httpx.get(f"http://{pair.distribution}/v2/{PRIVATE}/tags/list",
                         headers={"Authorization": f"Bearer {other}"})
    assert response.status_code == 401
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


def test_skopeo_pushes_and_pulls_through_distribution_with_cargohold_accounts(
    pair: Pair, clients: Clients, layout: Path, tmp_path: Path
) -> None:
    skopeo, host = clients.skopeo, pair.distribution
    skopeo.run("login", "--tls-verify=false", "-u", "writer", "-p", SECRETS["writer"], host)
    skopeo.copy(f"oci:{layout}:v1", f"docker://{host}/{PRIVATE}:v1")
    skopeo.copy(f"oci:{layout}:v1", f"docker://{host}/{PUBLIC}:v1")
    skopeo.copy(f"docker://{host}/{PRIVATE}:v1", f"oci:{tmp_path / 'back'}:v1")
    assert OCILayout(tmp_path / "back").resolve("v1").digest == OCILayout(layout).resolve("v1").digest
    skopeo.run("logout", host)
    assert skopeo.inspect(f"docker://{host}/{PUBLIC}:v1")["Digest"]  # cargohold's anonymous token for a public repo
    skopeo.fails("inspect", "--tls-verify=false", f"docker://{host}/{PRIVATE}:v1")
    skopeo.run("login", "--tls-verify=false", "-u", "reader", "-p", SECRETS["reader"], host)
    skopeo.copy(f"docker://{host}/{PRIVATE}:v1", f"oci:{tmp_path / 'reader'}:v1")
    skopeo.fails("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", f"docker://{host}/{PRIVATE}:reader")
    wrong = skopeo.fails("login", "--tls-verify=false", "-u", "reader", "-p", "wrong-password", host)
    assert "401" in wrong.stderr or "invalid" in wrong.stderr.lower()


def test_cargohold_client_against_distribution_with_refresh_tokens(pair: Pair, tmp_path: Path) -> None:
    image = build_image((1000,))
    ref = Reference.parse(f"{pair.distribution}/{PRIVATE}:client")
    options = TransportOptions(insecure_all=True, retries=1, backoff=0.01)
    with RegistryClient(keychain=StaticKeychain(Credentials("owner+ci", SECRETS["owner+ci"])), options=options) as c:
        push(c, write_layout(tmp_path / "src", image, "v1"), "v1", ref, cache=BlobCache(tmp_path / "c"))
        pull(c, ref, OCILayout(tmp_path / "dst"), tag="v1", cache=BlobCache(tmp_path / "c2"))
    assert OCILayout(tmp_path / "dst").resolve("v1").digest == image.digest
    token_requests = [line for line in pair.cargohold.log().splitlines() if '"path": "/auth/token"' in line]
    assert any('"method": "POST", "path": "/auth/token", "status": 200' in line for line in token_requests)
