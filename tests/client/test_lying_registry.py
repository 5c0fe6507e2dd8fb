"""A registry that serves corrupted content: the client must refuse it and write nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cargohold.client import DigestMismatch, OCILayout, Reference, RegistryClient, pull
from cargohold.client.cache import BlobCache
from cargohold.client.layout import LayoutError
from cargohold.digest import Digest

from .images import BuiltImage, build_image


def serve(image: BuiltImage, corrupt: Digest, protocol: str) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serve ``image`` as repository ``lying/repo``, with ``corrupt``'s bytes altered (same length).

    Over HTTP/1.1 blob bodies take the client's fast path; over HTTP/1.0 they go through httpx.
    """

    class Handler(BaseHTTPRequestHandler):
        protocol_version = protocol

        def log_message(self, *args: object) -> None:
            pass

        def _send(self, body: bytes, content_type: str, head: bool = False) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def do_GET(self, head: bool = False) -> None:
            path = self.path
            if path == "/v2/":
                return self._send(b"{}", "application/json", head)
            if path.startswith("/v2/lying/repo/manifests/"):
                return self._send(image.manifest, image.media_type, head)
            if path.startswith("/v2/lying/repo/blobs/"):
                digest = Digest.parse(path.rsplit("/", 1)[1])
                data = image.blobs[digest]
                if digest == corrupt:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                return self._send(data, "application/octet-stream", head)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_HEAD(self) -> None:
            self.do_GET(head=True)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture(params=["HTTP/1.1", "HTTP/1.0"])
def lying(request: pytest.FixtureRequest) -> Iterator[tuple[str, BuiltImage, Digest]]:
    image = build_image((4000, 5000))
    corrupt = next(d for d, data in image.blobs.items() if len(data) > 4000)
    server, thread = serve(image, corrupt, request.param)
    yield f"127.0.0.1:{server.server_address[1]}", image, corrupt
    server.shutdown()
    thread.join()


def test_corrupted_blob_is_refused_and_nothing_written(
    lying: tuple[str, BuiltImage, Digest], client: RegistryClient, tmp_path: Path
) -> None:
    host, image, corrupt = lying
    cache = BlobCache(tmp_path / "cache")
    layout = OCILayout(tmp_path / "dst")
    with pytest.raises(DigestMismatch) as caught:
        pull(client, Reference.parse(f"{host}/lying/repo:v1"), layout, tag="v1", cache=cache)
    assert caught.value.expected == str(corrupt)
    assert not layout.has_blob(corrupt)
    assert not cache.has(corrupt)
    assert not cache.partial_path(corrupt).exists()
    assert not layout.has_blob(image.digest)  # the manifest is written only after every blob
    with pytest.raises(LayoutError):
        layout.resolve("v1")


def test_manifest_by_wrong_digest_is_refused(lying: tuple[str, BuiltImage, Digest], client: RegistryClient) -> None:
    host, image, _ = lying
    wrong = Digest.of(b"something else")
    with pytest.raises(DigestMismatch):
        client.get_manifest(Reference.parse(f"{host}/lying/repo@{wrong}"))
