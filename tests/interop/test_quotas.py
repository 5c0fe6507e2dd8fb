"""Namespace quotas with a real client, on SQLite + filesystem and PostgreSQL + S3: three skopeo copies of
distinct images at once (their blobs uploaded beforehand, which costs nothing) into a namespace with room
for two: exactly two succeed, the third is refused with DENIED naming the quota, and the namespace's use is
the two images' bytes; the same image copied again costs nothing; clearing the quota lets the third in."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import random
import tarfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from cargohold.cli.main import main
from tests.support.backends import MATRIX, setup_for
from tests.support.servers import CargoholdServer, cargohold

from .tools import MakeClients, OciLayout, requires_skopeo, single_layer_layout

pytestmark = requires_skopeo


@pytest.fixture(params=MATRIX)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CargoholdServer]:
    place = setup_for(request.param, request)
    with cargohold(tmp_path, "--workers", "2", env=place.env, database_url=place.database_url) as running:
        yield running


def admin(server: CargoholdServer, *args: str) -> Any:
    where = ["--data-dir", str(server.data_dir), *(["--database-url", server.database_url]
                                                   if server.database_url else [])]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["admin", *where, *args, "--json"]) == 0
    return json.loads(out.getvalue())


def layout(folder: Path, name: str, size: int) -> tuple[OciLayout, int]:
    """An image of one layer of ``size`` random bytes; the bytes it references and its manifest's."""
    folder.mkdir()
    data = random.Random(name).randbytes(size)
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        entry = tarfile.TarInfo(f"{name}.bin")
        entry.size = len(data)
        archive.addfile(entry, io.BytesIO(data))
    layer = folder / "layer.tar.gz"
    layer.write_bytes(gzip.compress(tar.getvalue(), mtime=0))
    image = single_layer_layout(layer, folder / "layout", "latest", {"architecture": "amd64", "os": "linux"})
    blobs = image.path / "blobs" / "sha256"
    return image, sum(path.stat().st_size for path in blobs.iterdir())


def used(server: CargoholdServer, namespace: str) -> int:
    return int(next(q for q in admin(server, "quota", "list") if q["namespace"] == namespace)["used_bytes"])


def test_three_concurrent_pushes_into_room_for_two(
    make_clients: MakeClients, server: CargoholdServer, tmp_path: Path,
) -> None:
    skopeo = make_clients("clients", [server.host]).skopeo
    images = {name: layout(tmp_path / name, name, size)
              for name, size in (("one", 300_000), ("two", 310_000), ("three", 320_000))}
    sizes = sorted(size for _, size in images.values())
    # any two fit, the three do not
    admin(server, "quota", "set", "team", str(sizes[1] + sizes[2] + 5_000))
    # every blob uploaded first (never counted: no manifest references them), so that the three copies
    # put their manifests at nearly the same moment
    for name, (image, _) in images.items():
        for blob in (image.path / "blobs" / "sha256").iterdir():
            response = httpx.post(f"{server.url}/v2/team/{name}/blobs/uploads/", timeout=30,
                                  params={"digest": f"sha256:{blob.name}"}, content=blob.read_bytes())
            assert response.status_code == 201, response.text
    assert used(server, "team") == 0

    def copy(name: str) -> str | None:
        result = skopeo.run("copy", "--dest-tls-verify=false", f"oci:{images[name][0].path}:latest",
                            f"docker://{server.host}/team/{name}:latest", check=False)
        return None if result.returncode == 0 else result.stderr

    with ThreadPoolExecutor(3) as pool:
        outcomes = dict(zip(images, pool.map(copy, images), strict=True))
    refused = [name for name, error in outcomes.items() if error is not None]
    assert len(refused) == 1, outcomes
    error = outcomes[refused[0]]
    assert error is not None and "denied" in error.lower() and "quota of namespace team" in error, error
    winners = [name for name in images if name not in refused]
    assert used(server, "team") == sum(images[name][1] for name in winners)
    for name in winners:
        assert skopeo.inspect(f"docker://{server.host}/team/{name}:latest")["Digest"] == \
            images[name][0].descriptor("latest")["digest"]

    # the same image again: nothing more; to another repository of the namespace: its manifest bytes only
    skopeo.copy(f"oci:{images[winners[0]][0].path}:latest", f"docker://{server.host}/team/{winners[0]}:again")
    skopeo.copy(f"oci:{images[winners[0]][0].path}:latest", f"docker://{server.host}/team/{winners[1]}:copy")
    manifest = images[winners[0]][0].descriptor("latest")["size"]
    assert used(server, "team") == sum(images[name][1] for name in winners) + manifest

    admin(server, "quota", "clear", "team")
    skopeo.copy(f"oci:{images[refused[0]][0].path}:latest", f"docker://{server.host}/team/{refused[0]}:latest")
