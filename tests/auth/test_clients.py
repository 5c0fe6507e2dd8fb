"""Real clients against cargohold with token auth: skopeo, podman and buildah ``login`` then push and pull;
cargohold's own client library and ``cargohold login``. Each client has its own auth file and storage.

On PostgreSQL + S3 only, as the interop tests marked ``scaled``: the token flow the clients follow is the same on
either setup, and the other auth tests run the cast on SQLite + filesystem too."""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.cli.main import main
from cargohold.client import Credentials, OCILayout, RegistryClient, StaticKeychain, TransportOptions
from cargohold.client.cache import BlobCache
from cargohold.client.errors import AuthError, RegistryResponseError
from cargohold.client.pull import pull, push
from cargohold.reference import Reference
from tests.client.images import build_image, write_layout
from tests.interop.tools import Clients, requires_buildah, requires_podman, requires_skopeo
from tests.support.backends import S3
from tests.support.servers import cargohold

from .world import FAST_ENV, PRIVATE, PUBLIC, ROBOT, SECRETS, World, populate, store_for

on_s3 = pytest.mark.parametrize("world", [S3], indirect=True, scope="session")


@pytest.fixture()
def clients(world: World, tmp_path: Path) -> Iterator[Clients]:
    made = Clients(tmp_path / "clients", [world.server.host])
    yield made
    made.close()


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OCI layout holding one small image, tag ``v1``."""
    path = tmp_path_factory.mktemp("auth-image") / "layout"
    write_layout(path, build_image((3000, 5000)), "v1")
    return path


@on_s3
@requires_skopeo
def test_skopeo_login_push_pull(world: World, clients: Clients, layout: Path, tmp_path: Path) -> None:
    skopeo, host = clients.skopeo, world.server.host
    anonymous = skopeo.fails("copy", "--dest-tls-verify=false", f"oci:{layout}:v1",
                             f"docker://{host}/{PRIVATE}:skopeo")
    assert "401" in anonymous.stderr
    wrong = skopeo.fails("login", "--tls-verify=false", "-u", "writer", "-p", "not-the-password", host)
    assert "invalid username/password" in wrong.stderr or "401" in wrong.stderr
    assert "Login Succeeded" in skopeo.out("login", "--tls-verify=false", "-u", "writer", "-p", SECRETS["writer"],
                                           host)
    skopeo.copy(f"oci:{layout}:v1", f"docker://{host}/{PRIVATE}:skopeo")
    skopeo.copy(f"docker://{host}/{PRIVATE}:skopeo", f"oci:{tmp_path / 'back'}:v1")
    assert OCILayout(tmp_path / "back").resolve("v1").digest == OCILayout(layout).resolve("v1").digest
    assert "skopeo" in skopeo.list_tags(f"docker://{host}/{PRIVATE}")
    skopeo.delete(f"docker://{host}/{PRIVATE}:skopeo")
    skopeo.run("logout", host)
    assert skopeo.inspect(f"docker://{host}/{PUBLIC}:v1")["Digest"]  # public: anonymous is fine
    refused = skopeo.fails("inspect", "--tls-verify=false", f"docker://{host}/{PRIVATE}:v1")
    assert "unauthorized" in refused.stderr.lower() or "authentication required" in refused.stderr
    skopeo.run("login", "--tls-verify=false", "-u", "reader", "-p", SECRETS["reader"], host)
    denied = skopeo.fails("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", f"docker://{host}/{PRIVATE}:nope")
    assert "denied" in denied.stderr.lower()


@on_s3
@requires_skopeo
def test_skopeo_with_a_robot_token(world: World, clients: Clients, layout: Path) -> None:
    skopeo, host = clients.skopeo, world.server.host
    creds = f"{ROBOT}:{SECRETS[ROBOT]}"
    skopeo.run("copy", "--dest-tls-verify=false", "--dest-creds", creds, f"oci:{layout}:v1",
               f"docker://{host}/{PRIVATE}:robot")
    raw = skopeo.out("inspect", "--raw", "--tls-verify=false", "--creds", creds, f"docker://{host}/{PRIVATE}:robot")
    assert json.loads(raw)["schemaVersion"] == 2


@on_s3
@requires_podman
@requires_skopeo
def test_podman_login_pull_push(world: World, clients: Clients, layout: Path) -> None:
    podman, host = clients.podman, world.server.host
    clients.skopeo.run("copy", "--dest-tls-verify=false", "--dest-creds", f"owner:{SECRETS['owner']}",
                       f"oci:{layout}:v1", f"docker://{host}/{PRIVATE}:real")
    result = podman.run("login", "--tls-verify=false", "-u", "writer", "-p", "wrong-password", host, check=False)
    assert result.returncode != 0
    assert "Login Succeeded" in podman.out("login", "--tls-verify=false", "-u", "writer", "-p", SECRETS["writer"],
                                           host)
    podman.run("pull", "-q", "--tls-verify=false", f"{host}/{PRIVATE}:real")
    podman.run("tag", f"{host}/{PRIVATE}:real", f"{host}/{PRIVATE}:podman")
    podman.run("push", "-q", "--tls-verify=false", f"{host}/{PRIVATE}:podman")
    podman.run("tag", f"{host}/{PRIVATE}:real", f"{host}/acme/from-podman:1")
    podman.run("push", "-q", "--tls-verify=false", f"{host}/acme/from-podman:1")  # writer is in acme/devs
    podman.run("logout", host)
    podman.run("rmi", "-a", "-f")
    failed = podman.run("pull", "-q", "--tls-verify=false", f"{host}/{PRIVATE}:podman", check=False)
    assert failed.returncode != 0
    clients.skopeo.run("copy", "--dest-tls-verify=false", "--dest-creds", f"owner:{SECRETS['owner']}",
                       f"oci:{layout}:v1", f"docker://{host}/{PUBLIC}:real")
    podman.run("pull", "-q", "--tls-verify=false", f"{host}/{PUBLIC}:real")  # anonymous


@on_s3
@requires_buildah
def test_buildah_login_and_push_as_a_robot(world: World, clients: Clients, layout: Path) -> None:
    buildah, host = clients.buildah, world.server.host
    buildah.run("login", "--tls-verify=false", "-u", ROBOT, "-p", SECRETS[ROBOT], host)
    buildah.run("pull", "-q", f"oci:{layout}:v1")
    images = json.loads(buildah.out("images", "--json"))
    buildah.run("push", "-q", "--tls-verify=false", images[0]["id"], f"docker://{host}/{PRIVATE}:buildah")
    buildah.run("logout", host)
    failed = buildah.run("push", "-q", "--tls-verify=false", images[0]["id"], f"docker://{host}/{PRIVATE}:anon",
                         check=False)
    assert failed.returncode != 0


@on_s3
def test_cargohold_client_through_the_token_flow(world: World, tmp_path: Path) -> None:
    image = build_image((1500,))
    source = write_layout(tmp_path / "src", image, "v1")
    ref = Reference.parse(f"{world.server.host}/{PRIVATE}:client")
    options = TransportOptions(insecure_all=True, retries=1, backoff=0.01)
    with RegistryClient(keychain=StaticKeychain(Credentials("writer", SECRETS["writer"])), options=options) as c:
        push(c, source, "v1", ref, cache=BlobCache(tmp_path / "cache"))
        pull(c, ref, OCILayout(tmp_path / "dst"), tag="v1", cache=BlobCache(tmp_path / "cache2"))
        assert c.get_manifest(ref).digest == image.digest
        assert PRIVATE in list(c.catalog(world.server.host))
    assert OCILayout(tmp_path / "dst").resolve("v1").digest == image.digest
    with RegistryClient(keychain=StaticKeychain(Credentials("other", SECRETS["other"])), options=options) as c:
        with pytest.raises(RegistryResponseError) as denied:
            c.get_manifest(ref)
        assert denied.value.status == 403
        assert PRIVATE not in list(c.catalog(world.server.host))
    wrong = StaticKeychain(Credentials("writer", "wrong-password"))
    with RegistryClient(keychain=wrong, options=options) as c, pytest.raises((AuthError, RegistryResponseError)):
        c.get_manifest(ref)


@on_s3
def test_cargohold_login_command(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    host = world.server.host
    monkeypatch.setattr("sys.stdin", io.StringIO("wrong-password\n"))
    assert main(["login", host, "-u", "reader", "--password-stdin", "--insecure"]) != 0
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO(SECRETS["reader"] + "\n"))
    assert main(["login", host, "-u", "reader", "--password-stdin", "--insecure"]) == 0
    assert "Login Succeeded" in capsys.readouterr().out
    assert main(["tags", f"{host}/{PRIVATE}", "--insecure", "--json"]) == 0
    assert "v1" in json.loads(capsys.readouterr().out)


def test_cargohold_login_reports_too_many_failures_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A 429 from the token service is reported at once with the wait the server asked for (no silent
    retries), by ``cargohold login`` and by any command whose credentials are being refused."""
    env = {**FAST_ENV, "CARGOHOLD_LOGIN_FAILURES_PER_ACCOUNT_ADDRESS": "2", "CARGOHOLD_LOGIN_WINDOW_SECONDS": "600"}
    store = store_for(tmp_path / "data")
    populate(store)
    store.close()
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with cargohold(tmp_path, "--auth", "token", env=env) as server:
        def login(password: str) -> int:
            monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
            return main(["login", server.host, "-u", "reader", "--password-stdin", "--insecure"])

        assert [login("wrong-password") for _ in range(2)] == [1, 1]
        capsys.readouterr()
        started = time.monotonic()
        assert login(SECRETS["reader"]) == 1
        assert time.monotonic() - started < 5
        error = capsys.readouterr().err
        found = re.search(r"too many failed logins; try again in (\d+) s", error)
        assert found is not None, error
        assert 590 <= int(found.group(1)) <= 600
        assert "Login Succeeded" not in error
        started = time.monotonic()
        assert main(["tags", f"{server.host}/{PRIVATE}", "--creds", f"reader:{SECRETS['reader']}", "--insecure"]) == 1
        assert time.monotonic() - started < 5
        assert "TOOMANYREQUESTS" in capsys.readouterr().err
