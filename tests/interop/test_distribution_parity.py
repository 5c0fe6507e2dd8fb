"""The skopeo scenarios against cargohold and against Distribution 2.8, the reference registry.

A scenario that fails on Distribution is a wrong test, not a cargohold bug; one that passes on
Distribution and fails on cargohold is a cargohold bug.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.backends import S3, SQLITE, setup_for
from tests.support.servers import cargohold

from . import scenarios
from .tools import BuiltImages, MakeClients, OciLayout, distribution, requires_distribution, requires_skopeo

pytestmark = [requires_skopeo, requires_distribution]

DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@dataclass
class Target:
    name: str
    host: str
    check: Callable[[], None]  # storage checks after writes (cargohold only)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """cargohold (SQLite + filesystem; PostgreSQL + S3 for ``scaled`` tests) and Distribution."""
    if "target" in metafunc.fixturenames:
        names = [f"cargohold-{S3}" if metafunc.definition.get_closest_marker("scaled") else "cargohold", "distribution"]
        metafunc.parametrize("target", names, indirect=True)


@pytest.fixture()
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param.startswith("cargohold"):
        setup = setup_for(S3 if request.param.endswith(S3) else SQLITE, request)
        (tmp_path / "cargohold").mkdir()
        with cargohold(tmp_path / "cargohold", env=setup.env, database_url=setup.database_url) as server:
            yield Target("cargohold", server.host, server.assert_storage_consistent)
    else:
        with distribution(tmp_path / "distribution") as server:
            yield Target("distribution", server.host, lambda: None)


@pytest.fixture()
def skopeo(make_clients: MakeClients, target: Target) -> scenarios.Skopeo:
    return make_clients("clients", [target.host]).skopeo


@pytest.mark.scaled
def test_oci_round_trip(skopeo: scenarios.Skopeo, target: Target, images: BuiltImages, tmp_path: Path) -> None:
    scenarios.oci_round_trip(skopeo, target.host, images.oci, "small", tmp_path)
    target.check()


def test_index_round_trip(skopeo: scenarios.Skopeo, target: Target, images: BuiltImages, tmp_path: Path) -> None:
    scenarios.index_round_trip(skopeo, target.host, images.oci, "multi", tmp_path)
    target.check()


@pytest.mark.scaled
def test_docker_round_trip(skopeo: scenarios.Skopeo, target: Target, images: BuiltImages, tmp_path: Path) -> None:
    scenarios.docker_round_trip(skopeo, target.host, images.docker_dir, tmp_path)
    target.check()


def test_tags_and_delete(skopeo: scenarios.Skopeo, target: Target, images: BuiltImages) -> None:
    scenarios.tags_and_delete(skopeo, target.host, images.oci)
    target.check()


def test_schema1_push(skopeo: scenarios.Skopeo, target: Target, images: BuiltImages) -> None:
    scenarios.schema1_push(skopeo, target.host, images.oci, "small")
    target.check()


def test_debian_round_trip(skopeo: scenarios.Skopeo, target: Target, debian: OciLayout, tmp_path: Path) -> None:
    scenarios.oci_round_trip(skopeo, target.host, debian, "bookworm", tmp_path, repo="library/debian")
    target.check()


@pytest.mark.scaled
def test_failed_push_leaves_no_repository(
    skopeo: scenarios.Skopeo, target: Target, images: BuiltImages, tmp_path: Path
) -> None:
    """skopeo gives up on a push whose layers are corrupt; no repository may appear from the aborted uploads."""
    bad = OciLayout(tmp_path / "corrupt")
    shutil.copytree(images.oci.path, bad.path)
    for layer in bad.manifest("small")["layers"]:
        path = bad.blob_path(layer["digest"])
        path.write_bytes(bytes(reversed(path.read_bytes())))
    failure = skopeo.fails("copy", "--dest-tls-verify=false", f"oci:{bad.path}:small",
                           f"docker://{target.host}/broken/push:1")
    assert "digest did not match" in failure.stderr.lower(), failure.stderr
    target.check()

    assert "broken/push" not in httpx.get(f"http://{target.host}/v2/_catalog").json()["repositories"]
    tags = httpx.get(f"http://{target.host}/v2/broken/push/tags/list")
    assert tags.status_code == 404, tags.text
    assert tags.json()["errors"][0]["code"] == "NAME_UNKNOWN"


def test_client_without_manifest_lists(skopeo: scenarios.Skopeo, target: Target, images: BuiltImages) -> None:
    """A client whose Accept leaves out manifest lists: by tag the linux/amd64 image, by digest the list."""
    skopeo.copy(f"oci:{images.oci.path}:multi", f"docker://{target.host}/parity/list:v1", "--all", "--format", "v2s2")
    url = f"http://{target.host}/v2/parity/list/manifests"
    listing = httpx.get(f"{url}/v1", headers={"Accept": DOCKER_LIST})
    assert listing.headers["content-type"] == DOCKER_LIST, listing.text
    amd64 = next(m for m in listing.json()["manifests"] if m["platform"]["architecture"] == "amd64")
    image = httpx.get(f"{url}/v1", headers={"Accept": DOCKER_MANIFEST})
    assert image.status_code == 200 and image.headers["content-type"] == DOCKER_MANIFEST
    assert image.headers["docker-content-digest"] == amd64["digest"]
    by_digest = httpx.get(f"{url}/{listing.headers['docker-content-digest']}", headers={"Accept": DOCKER_MANIFEST})
    assert by_digest.status_code == 200 and by_digest.content == listing.content
