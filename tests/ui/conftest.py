"""A token-auth cargohold with a few accounts and images, and one chromium per module.

Accounts (passwords in :data:`PASSWORDS`): ``root`` (superuser), ``alice`` (may write ``team/*``, so
delete there), ``bob`` (may read ``team/app`` only). ``team/app`` holds ``v1`` (its manifest annotated
with markup, and signed: a referrer), ``multi`` (an index of linux/amd64 and linux/arm64), ``history`` (its config
telling how it was built) and ``skopeo`` (pushed
by skopeo from an OCI layout); ``team/secret`` holds ``v1``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser

from cargohold.access_model import Role
from cargohold.auth.passwords import hash_password
from tests.api.helpers import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    descriptor,
    image_manifest,
    push_blob,
    put_manifest,
    sha256,
)
from tests.auth.world import FAST_ENV, store_for
from tests.client.images import build_image, write_layout
from tests.interop.tools import Clients
from tests.support.backends import MATRIX, setup_for
from tests.support.servers import CargoholdServer, cargohold

from .support import chromium

PASSWORDS = {"root": "root-password-1", "alice": "alice-password-1", "bob": "bob-password-1"}
APP = "team/app"
SECRET = "team/secret"
MARKUP = "<script>alert('annotation')</script>"
SIGNATURE_TYPE = "application/vnd.example.signature"
#: the config of ``team/app:history``: a platform with a variant, settings, and a history with markup in it
BUILT = {
    "architecture": "arm64", "os": "linux", "variant": "v8", "created": "2025-01-02T03:04:05Z",
    "config": {"Entrypoint": ["/app"], "Cmd": ["--serve"], "WorkingDir": "/srv"},
    "history": [
        {"created": "2025-01-02T03:04:00Z", "created_by": "/bin/sh -c echo <b>built</b> > /srv/x"},
        {"created": "2025-01-02T03:04:05Z", "created_by": "ENV MODE=prod", "empty_layer": True},
    ],
}


def basic(name: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{PASSWORDS[name]}".encode()).decode()


@dataclass
class UiWorld:
    server: CargoholdServer
    #: the layers skopeo pushed as ``team/app:skopeo``: (digest, size) in order
    skopeo_layers: list[tuple[str, int]]

    @property
    def url(self) -> str:
        return self.server.url

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": basic("root")})


def make_accounts(data_dir: Path, database_url: str | None) -> None:
    store = store_for(data_dir, database_url)
    for name, password in PASSWORDS.items():
        store.create_user(name, hash_password(password, 4), superuser=name == "root")
    store.grant("team/*", "alice", Role.WRITE)
    store.grant(APP, "bob", Role.READ)
    store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module", params=MATRIX)
def ui_world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiWorld]:
    setup = setup_for(request.param, request)
    tmp = tmp_path_factory.mktemp("ui-world")
    with ThreadPoolExecutor(1) as thread:  # its own event loops: the module's chromium runs Playwright's in this one
        thread.submit(make_accounts, tmp / "data", setup.database_url).result()
    layout = tmp / "layout"
    image = build_image((3000, 5000))
    write_layout(layout, image, "v1")
    with cargohold(tmp, "--auth", "token", env={**FAST_ENV, **setup.env}, database_url=setup.database_url) as server:
        with httpx.Client(base_url=server.url, headers={"Authorization": basic("root")}) as root:
            token = root.get("/auth/token", params={"service": "cargohold", "scope": [
                f"repository:{APP}:pull,push", f"repository:{SECRET}:pull,push"]}).json()["token"]
            root.headers["Authorization"] = f"Bearer {token}"
            raw = image_manifest(root, APP, layers=1, annotations={"note": MARKUP})
            assert put_manifest(root, APP, "v1", raw, OCI_MANIFEST).status_code == 201
            subject = {"mediaType": OCI_MANIFEST, "digest": sha256(raw), "size": len(raw)}
            signature = image_manifest(root, APP, layers=1, seed="signature", subject=subject,
                                       artifactType=SIGNATURE_TYPE)
            assert put_manifest(root, APP, sha256(signature), signature, OCI_MANIFEST).status_code == 201
            children = []
            for architecture in ("amd64", "arm64"):
                child = image_manifest(root, APP, layers=2, seed=architecture)
                assert put_manifest(root, APP, sha256(child), child, OCI_MANIFEST).status_code == 201
                children.append(descriptor(OCI_MANIFEST, child, platform={"os": "linux", "architecture": architecture}))
            index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}).encode()
            assert put_manifest(root, APP, "multi", index, OCI_INDEX).status_code == 201
            config = json.dumps(BUILT).encode()
            push_blob(root, APP, config)
            raw = image_manifest(root, APP, layers=1, seed="history", config=descriptor(OCI_CONFIG, config))
            assert put_manifest(root, APP, "history", raw, OCI_MANIFEST).status_code == 201
            raw = image_manifest(root, SECRET, layers=1, seed="secret")
            assert put_manifest(root, SECRET, "v1", raw, OCI_MANIFEST).status_code == 201
        clients = Clients(tmp / "clients", [server.host])
        try:
            clients.skopeo.copy(f"oci:{layout}:v1", f"docker://{server.host}/{APP}:skopeo", "--dest-tls-verify=false",
                                "--dest-creds", f"alice:{PASSWORDS['alice']}")
        finally:
            clients.close()
        with httpx.Client(base_url=server.url, headers={"Authorization": basic("root")}) as root:
            assert root.post("/admin/v1/usage").status_code == 200  # the repositories page shows the figures
        layers = json.loads(image.manifest)["layers"]
        yield UiWorld(server, [(layer["digest"], layer["size"]) for layer in layers])
