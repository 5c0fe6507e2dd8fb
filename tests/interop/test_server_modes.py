"""Clients against cargohold run in other modes: HTTPS with a private CA, several workers, read-only, no deletes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.requirements import require_module
from tests.support.servers import CargoholdServer, free_port

from .tools import BuiltImages, MakeClients, OciLayout, TlsFiles, make_tls, requires_podman, requires_skopeo

pytestmark = requires_skopeo


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


@contextlib.contextmanager
def serve(data_dir: Path, *args: str, tls: TlsFiles | None = None) -> Iterator[CargoholdServer]:
    """cargohold on ``data_dir`` (which may hold an earlier server's data) with extra flags."""
    server = CargoholdServer(data_dir, free_port(), [*args, *(tls.server_args() if tls else [])],
                             scheme="https" if tls else "http")
    server.start(verify=ssl.create_default_context(cafile=str(tls.ca)) if tls else True)
    try:
        yield server
    finally:
        server.stop()


@requires_podman
def test_verified_tls_and_two_workers(
    tls: TlsFiles, images: BuiltImages, make_clients: MakeClients, tmp_path: Path
) -> None:
    """skopeo, podman and python-dxf verify cargohold's certificate against the test CA (no --tls-verify=false)."""
    with serve(tmp_path / "data", "--workers", "2", tls=tls) as server:
        clients = make_clients("clients", [])  # nothing marked insecure
        ref = f"docker://{server.host}/tls/small:1"
        clients.skopeo.run("copy", "--dest-cert-dir", str(tls.cert_dir), f"oci:{images.oci.path}:small", ref)
        failure = clients.skopeo.fails("inspect", ref)
        assert "certificate signed by unknown authority" in failure.stderr, failure.stderr
        raw = clients.skopeo.out_bytes("inspect", "--raw", "--cert-dir", str(tls.cert_dir), ref)
        assert f"sha256:{hashlib.sha256(raw).hexdigest()}" == images.oci.descriptor("small")["digest"]

        clients.podman.run("pull", "--cert-dir", str(tls.cert_dir), f"{server.host}/tls/small:1")

        dxf = require_module("dxf", "python-dxf")
        client = dxf.DXF(server.host, "tls/dxf", tlsverify=str(tls.ca))
        payload = os.urandom(100_000)
        digest = client.push_blob(data=iter([payload]), digest=f"sha256:{hashlib.sha256(payload).hexdigest()}")
        assert b"".join(client.pull_blob(digest)) == payload
        server.assert_storage_consistent()


def test_concurrent_pushes_to_two_workers(
    debian: OciLayout, make_clients: MakeClients, tmp_path: Path
) -> None:
    """Two worker processes take the same large layer from several skopeo processes at once."""
    with serve(tmp_path / "data", "--workers", "2") as server:
        clients = make_clients("clients", [server.host])
        refs = [f"docker://{server.host}/workers/r{i % 2}:{i}" for i in range(4)]
        with ThreadPoolExecutor(len(refs)) as pool:
            list(pool.map(lambda ref: clients.skopeo.copy(f"oci:{debian.path}:bookworm", ref), refs))
        server.assert_storage_consistent()
        for ref in refs:
            assert clients.skopeo.inspect(ref)["Digest"] == debian.descriptor("bookworm")["digest"]


def test_read_only_serves_pulls_and_refuses_pushes(
    images: BuiltImages, make_clients: MakeClients, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    with serve(data) as server:
        clients = make_clients("writer", [server.host])
        clients.skopeo.copy(f"oci:{images.oci.path}:small", f"docker://{server.host}/ro/small:1")
    with serve(data, "--read-only") as server:
        clients = make_clients("reader", [server.host])
        back = tmp_path / "back"
        clients.skopeo.copy(f"docker://{server.host}/ro/small:1", f"oci:{back}:small")
        assert OciLayout(back).descriptor("small")["digest"] == images.oci.descriptor("small")["digest"]

        failure = clients.skopeo.fails("copy", "--dest-tls-verify=false", f"oci:{images.oci.path}:base",
                                       f"docker://{server.host}/ro/base:1")
        assert "unsupported" in failure.stderr.lower(), failure.stderr
        failure = clients.skopeo.fails("delete", "--tls-verify=false", f"docker://{server.host}/ro/small:1")
        assert "405" in failure.stderr or "unsupported" in failure.stderr.lower(), failure.stderr
        assert clients.skopeo.list_tags(f"docker://{server.host}/ro/small") == ["1"]
        server.assert_storage_consistent()
        assert server.upload_files() == set()


def test_deletes_disabled(images: BuiltImages, make_clients: MakeClients, tmp_path: Path) -> None:
    with serve(tmp_path / "data", "--disable-delete") as server:
        clients = make_clients("clients", [server.host])
        ref = f"docker://{server.host}/nodelete/small:1"
        clients.skopeo.copy(f"oci:{images.oci.path}:small", ref)
        failure = clients.skopeo.fails("delete", "--tls-verify=false", ref)
        assert "405" in failure.stderr and "UNSUPPORTED" in failure.stderr, failure.stderr
        assert clients.skopeo.inspect(ref)["Digest"] == images.oci.descriptor("small")["digest"]
        server.assert_storage_consistent()
