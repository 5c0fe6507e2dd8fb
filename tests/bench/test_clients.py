"""The client benchmark compares equal work: skopeo and ``cargohold`` copy the same manifest,
and skopeo starts from an empty blob-info cache of its own, as our client starts from an empty cache."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.servers import Server  # noqa: E402

from bench import images, workloads  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("skopeo") is None, reason="needs skopeo")


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[Server]:
    server = Server("cargohold", tmp_path / "server").start()
    try:
        yield server
    finally:
        server.cleanup()


def _layout(folder: Path) -> tuple[Path, images.Blob]:
    """An image whose one layer is said to be tar+gzip but is random bytes, as in the benchmark."""
    layer = folder / "layer.bin"
    blob = images.random_file(layer, 64 << 10)
    layout = folder / "layout"
    images.write_layout(layout, "latest", [(layer, blob)], "equal-work")
    return layout, blob


def test_both_clients_push_and_pull_the_same_manifest(server: Server, tmp_path: Path) -> None:
    layout, _ = _layout(tmp_path)
    expected = workloads.layout_digest(layout)
    for tool in ("cargohold", "skopeo", "raw"):
        # each raises if the registry, or the layout pulled back, names another manifest
        workloads.client_push(tool, layout, server, f"eq/{tool}", tmp_path / "scratch")
        assert workloads.registry_digest(server, f"eq/{tool}", "latest") == expected
        for puller in ("cargohold", "skopeo", "raw"):
            timing = workloads.client_pull(puller, server, f"eq/{tool}", tmp_path / "scratch")
            assert timing.seconds > 0 and timing.cpu > 0


@pytest.mark.skipif(os.geteuid() != 0 or not Path(workloads.ROOT_BLOB_INFO_CACHE).is_dir(),
                    reason="root's skopeo keeps its blob-info cache in /var/lib/containers/cache")
def test_skopeo_leaves_the_shared_blob_info_cache_alone(server: Server, tmp_path: Path) -> None:
    layout, blob = _layout(tmp_path)
    workloads.client_push("skopeo", layout, server, "eq/cache", tmp_path / "scratch")
    workloads.client_pull("skopeo", server, "eq/cache", tmp_path / "scratch")
    hex_digest = blob.digest.split(":", 1)[1].encode()
    for path in Path(workloads.ROOT_BLOB_INFO_CACHE).iterdir():
        assert hex_digest not in path.read_bytes(), f"{path} learned of the benchmark's layer"
