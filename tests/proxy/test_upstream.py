"""Upstream: the proxy's async face over the client, against real registries (htpasswd and token auth)."""

from __future__ import annotations

import asyncio

from cargohold.digest import Digest
from cargohold.proxy.upstream import Upstream

from .conftest import UpstreamServer


async def _read(upstream: Upstream, repository: str, digest: Digest) -> bytes:
    blob = await upstream.open_blob(repository, digest)
    try:
        return b"".join([chunk async for chunk in blob.chunks()])
    finally:
        await blob.close()


def test_reads_manifests_blobs_and_tags_with_credentials(any_upstream: UpstreamServer) -> None:
    image = any_upstream.push_image()
    layer = image.layers[0]

    async def run() -> None:
        upstream = Upstream(any_upstream.settings("up"))
        try:
            digest, media_type, size = await upstream.head_manifest(image.repository, image.tag)
            assert (digest, media_type, size) == (image.manifest_digest, image.media_type, len(image.manifest))
            raw, media_type, digest = await upstream.get_manifest(image.repository, image.tag)
            assert (raw, media_type, digest) == (image.manifest, image.media_type, image.manifest_digest)
            assert await upstream.get_manifest(image.repository, image.manifest_digest) == (raw, media_type, digest)
            assert await upstream.blob_size(image.repository, Digest.parse(layer)) == len(image.blobs[layer])
            assert await _read(upstream, image.repository, Digest.parse(layer)) == image.blobs[layer]
            assert await upstream.tags(image.repository) == [image.tag]
            assert upstream.counts == {"manifest": 2, "blob": 1}
        finally:
            await upstream.close()

    asyncio.run(run())
    # the upstream saw the same pulls (HEADs are not pulls)
    assert any_upstream.gets(image.repository, "manifests") == 2
    assert any_upstream.gets(image.repository, "blobs") == 1
