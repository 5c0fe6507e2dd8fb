"""Bearer-token flow (against a mock registry and token service), docker config.json and helpers."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import httpx
import pytest

import cargohold.client as client_package
from cargohold import errcodes
from cargohold.client import Credentials, DockerConfig, Reference, RegistryClient, StaticKeychain, TransportOptions
from cargohold.client.auth import merge_scopes, parse_challenge


def test_public_names_are_sorted_and_exist() -> None:
    assert client_package.__all__ == sorted(client_package.__all__)
    assert all(hasattr(client_package, name) for name in client_package.__all__)


def test_parse_challenge_and_merge_scopes() -> None:
    challenge = parse_challenge('Bearer realm="https://auth.example/token",service="reg",scope="repository:a:pull"')
    assert challenge is not None and challenge.scheme == "bearer"
    assert (challenge.realm, challenge.service, challenge.scopes) == (
        "https://auth.example/token",
        "reg",
        frozenset({"repository:a:pull"}),
    )
    assert merge_scopes(frozenset({"repository:a:pull", "repository:a:push", "repository:b:pull"})) == frozenset(
        {"repository:a:pull,push", "repository:b:pull"}
    )


def mock_registry(tokens: list[httpx.Request], *, password: str = "pw") -> httpx.MockTransport:
    """A registry that wants bearer tokens, and its token service (basic auth tester:pw)."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.test":
            tokens.append(request)
            expected = "Basic " + base64.b64encode(f"tester:{password}".encode()).decode()
            if request.headers.get("Authorization") != expected:
                return httpx.Response(401, json={"errors": [{"code": "UNAUTHORIZED", "message": "bad creds"}]})
            scopes = " ".join(request.url.params.get_list("scope"))
            return httpx.Response(200, json={"token": f"tok:{scopes}", "expires_in": 300})
        auth = request.headers.get("Authorization", "")
        challenge = 'Bearer realm="http://auth.test/token",service="reg.test"'
        if request.url.path == "/v2/":
            return (
                httpx.Response(200)
                if auth.startswith("Bearer")
                else httpx.Response(401, headers={"WWW-Authenticate": challenge})
            )
        if "repository:team/app:pull" not in auth:
            scope = ',scope="repository:team/app:pull"'
            return httpx.Response(
                401,
                headers={"WWW-Authenticate": challenge + scope},
                json={"errors": [{"code": "UNAUTHORIZED", "message": "need token"}]},
            )
        return httpx.Response(200, json={"name": "team/app", "tags": ["v1"]})

    return httpx.MockTransport(handler)


def test_bearer_flow_fetches_scoped_token_and_caches_it() -> None:
    tokens: list[httpx.Request] = []
    keychain = StaticKeychain(Credentials("tester", "pw"))
    with RegistryClient(keychain=keychain, options=TransportOptions(insecure_all=True)) as client:
        client.http = httpx.Client(transport=mock_registry(tokens), auth=client.auth)
        ref = Reference.parse("reg.test/team/app")
        assert client.tags(ref) == ["v1"]
        assert client.tags(ref) == ["v1"]
    scopes = [r.url.params.get_list("scope") for r in tokens]
    assert scopes == [[], ["repository:team/app:pull"]]  # ping, then one token reused by the second call
    assert all(r.url.params["service"] == "reg.test" for r in tokens)


def test_bearer_flow_with_wrong_password_is_unauthorized() -> None:
    tokens: list[httpx.Request] = []
    keychain = StaticKeychain(Credentials("tester", "nope"))
    with RegistryClient(keychain=keychain, options=TransportOptions(insecure_all=True)) as client:
        client.http = httpx.Client(transport=mock_registry(tokens), auth=client.auth)
        with pytest.raises(errcodes.Unauthorized):
            client.tags(Reference.parse("reg.test/team/app"))


def test_docker_config_auths_store_and_erase(tmp_path: Path) -> None:
    config = DockerConfig(tmp_path / "config.json")
    assert config.resolve("reg.example:5000") is None
    config.store("reg.example:5000", Credentials("alice", "pa:ss"))
    data = json.loads((tmp_path / "config.json").read_text())
    assert base64.b64decode(data["auths"]["reg.example:5000"]["auth"]).decode() == "alice:pa:ss"
    assert oct(os.stat(tmp_path / "config.json").st_mode & 0o777) == "0o600"
    found = config.resolve("reg.example:5000")
    assert found is not None and (found.username, found.password) == ("alice", "pa:ss")
    assert config.erase("reg.example:5000") and config.resolve("reg.example:5000") is None
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:secret").decode()}}})
    )
    hub = config.resolve("docker.io")
    assert hub is not None and hub.username == "hub"


def test_credential_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helper = tmp_path / "bin" / "docker-credential-fake"
    helper.parent.mkdir()
    helper.write_text(
        "#!/bin/sh\n"
        "read server\n"
        'if [ "$1" = get ] && [ "$server" = "helped.example" ]; then\n'
        '  echo \'{"ServerURL":"helped.example","Username":"bot","Secret":"t0ken"}\'; exit 0; fi\n'
        'if [ "$1" = get ]; then echo "credentials not found in native keychain"; exit 1; fi\n'
        f'echo "$1 $server" >> {tmp_path}/log\n'
    )
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{helper.parent}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "config.json").write_text(json.dumps({"credHelpers": {"helped.example": "fake"}}))
    config = DockerConfig(tmp_path / "config.json")
    found = config.resolve("helped.example")
    assert found is not None and (found.username, found.password) == ("bot", "t0ken")
    assert config.resolve("other.example") is None
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "fake"}))
    assert config.resolve("other.example") is None  # helper says "not found"
    config.store("other.example", Credentials("u", "p"))
    assert (tmp_path / "log").read_text().startswith("store")
