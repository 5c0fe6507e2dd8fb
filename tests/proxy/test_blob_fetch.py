"""BlobFetches against a real upstream (Distribution with htpasswd), a filesystem store and SQL metadata."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from cargohold.digest import Digest
from cargohold.errcodes import BlobUnknown
from cargohold.events.audit import EventFilter
from cargohold.events.recorder import Recorder
from cargohold.metadata import migrate
from cargohold.metadata.factory import open_metadata_store
from cargohold.metadata.store import MetadataStore
from cargohold.proxy import blob_fetch
from cargohold.proxy.blob_fetch import BlobFetches, lease_name
from cargohold.proxy.upstream import Upstream, UpstreamError
from cargohold.storage.driver import BlobStore
from cargohold.storage.factory import open_blob_store
from tests.support.seaweedfs import SeaweedFS

from .conftest import PushedImage, UpstreamServer

LOCAL = "cache/library/app"


class Local:
    """A registry's store and metadata (the proxy's side), and the fetches of one or more 'workers'."""

    def __init__(self, tmp: Path, url: str | None, s3: dict[str, object] | None = None) -> None:
        self.url = url or f"sqlite://{tmp / 'meta.db'}"
        self.root = tmp / "blobs"
        #: the S3 store's options; None: a filesystem store under ``root``
        self.s3 = s3
        migrate(self.url)
        self.metas: list[MetadataStore] = []
        self.stores: list[BlobStore] = []

    def worker(self, holder: str | None = None) -> BlobFetches:
        meta = open_metadata_store(self.url)
        store = (open_blob_store("s3", self.s3, meta) if self.s3 is not None
                 else open_blob_store("filesystem", {"root": str(self.root)}))
        self.metas.append(meta)
        self.stores.append(store)
        return BlobFetches(store, meta, Recorder(), holder)

    @property
    def meta(self) -> MetadataStore:
        return self.metas[0]

    @property
    def store(self) -> BlobStore:
        return self.stores[0]

    async def nothing_stored(self, digest: Digest) -> None:
        assert await self.meta.blob_size(str(digest)) is None
        assert await self.store.stat(digest) is None
        assert await self.store.upload_ids() == {}
        assert await self.meta.stale_uploads(2**40) == []

    async def close(self) -> None:
        for meta in self.metas:
            await meta.close()


@contextlib.asynccontextmanager
async def local(tmp: Path, url: str | None = None, s3: dict[str, object] | None = None) -> AsyncIterator[Local]:
    place = Local(tmp, url, s3)
    try:
        yield place
    finally:
        await place.close()


async def read_all(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def fetch_all(fetches: BlobFetches, upstream: Upstream, image: PushedImage, digest: str,
                    repository: str = LOCAL) -> bytes:
    size, chunks = await fetches.fetch(repository, Digest.parse(digest), upstream, image.repository)
    if chunks is None:  # stored and linked already: the server sends the stored file
        assert await fetches.meta.linked_blob_size(repository, digest) == size
        chunks = fetches.store.read(Digest.parse(digest))
    data = await read_all(chunks)
    assert len(data) == size
    await fetches.idle()  # the last bytes go out once verified; the commit follows
    return data


def big_image(server: UpstreamServer, size: int = 6 << 20) -> PushedImage:
    return server.push_image(layers=[secrets.token_bytes(size)])


def test_a_blob_is_fetched_once_stored_verified_and_linked(
    distribution_upstream: UpstreamServer, tmp_path: Path
) -> None:
    image = distribution_upstream.push_image()
    layer = image.layers[0]

    async def run() -> None:
        async with local(tmp_path) as place:
            fetches = place.worker()
            upstream = Upstream(distribution_upstream.settings())
            try:
                assert await fetch_all(fetches, upstream, image, layer) == image.blobs[layer]
                assert await place.meta.linked_blob_size(LOCAL, layer) == len(image.blobs[layer])
                async with contextlib.aclosing(place.store.read(Digest.parse(layer))) as stored:
                    assert await read_all(stored) == image.blobs[layer]
                # asked again (as a client would if it raced the link): served from the store
                assert await fetch_all(fetches, upstream, image, layer) == image.blobs[layer]
                events = await place.meta.list_events(EventFilter(), 10)
                assert sorted((str(e.event.action), e.event.repository) for e in events) == [
                    ("blob.push", LOCAL), ("repository.create", LOCAL)]
                assert await place.store.upload_ids() == {}
                assert upstream.counts["blob"] == 1
            finally:
                await upstream.close()

    asyncio.run(run())
    assert distribution_upstream.gets(image.repository, "blobs", layer) == 1


def test_a_small_blob_is_stored_before_its_first_byte_and_a_large_one_after_its_last(
    distribution_upstream: UpstreamServer, tmp_path: Path
) -> None:
    """A client that has a small blob finds it stored at once (a second GET is a plain hit); a large one's
    commit follows its last byte, without holding the client."""
    small = distribution_upstream.push_image(layers=[secrets.token_bytes(blob_fetch.SMALL_BLOB)])
    large = big_image(distribution_upstream)

    async def run() -> None:
        async with local(tmp_path) as place:
            fetches = place.worker()
            upstream = Upstream(distribution_upstream.settings())
            try:
                for image, stored_at_once in ((small, True), (large, False)):
                    layer = image.layers[0]
                    _, chunks = await fetches.fetch(LOCAL, Digest.parse(layer), upstream, image.repository)
                    assert chunks is not None
                    first = await anext(chunks)
                    linked = await place.meta.linked_blob_size(LOCAL, layer)
                    assert (linked is not None) is stored_at_once
                    assert first + await read_all(chunks) == image.blobs[layer]
                    await fetches.idle()
                    assert await place.meta.linked_blob_size(LOCAL, layer) == len(image.blobs[layer])
            finally:
                await upstream.close()

    asyncio.run(run())


def test_twenty_concurrent_requests_cause_one_upstream_get(
    distribution_upstream: UpstreamServer, tmp_path: Path
) -> None:
    image = big_image(distribution_upstream)
    layer = image.layers[0]

    async def run() -> list[bytes]:
        async with local(tmp_path) as place:
            fetches = place.worker()
            upstream = Upstream(distribution_upstream.settings())
            try:
                return await asyncio.gather(*(fetch_all(fetches, upstream, image, layer) for _ in range(20)))
            finally:
                await upstream.close()

    results = asyncio.run(run())
    assert all(data == image.blobs[layer] for data in results)
    assert distribution_upstream.gets(image.repository, "blobs", layer) == 1


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_two_workers_over_one_database_cause_one_upstream_get(
    distribution_upstream: UpstreamServer, tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres").migrated_database() if database == "postgres" else None
    image = big_image(distribution_upstream, 2 << 20)
    layer = image.layers[0]

    async def run() -> list[bytes]:
        async with local(tmp_path, url) as place:
            workers = [place.worker(f"worker-{n}") for n in range(2)]
            upstreams = [Upstream(distribution_upstream.settings()) for _ in workers]
            try:
                return await asyncio.gather(*(
                    fetch_all(workers[n % 2], upstreams[n % 2], image, layer) for n in range(6)))
            finally:
                for upstream in upstreams:
                    await upstream.close()

    results = asyncio.run(run())
    assert all(data == image.blobs[layer] for data in results)
    assert distribution_upstream.gets(image.repository, "blobs", layer) == 1


def test_an_s3_store_keeps_a_fetched_blob_and_none_whose_bytes_are_wrong(
    distribution_upstream: UpstreamServer, tmp_path: Path, seaweedfs: SeaweedFS
) -> None:
    """The same fetch into an S3 store (multipart uploads): a blob of several pieces is served, stored and
    linked; one whose last byte is wrong is cut short and leaves nothing in the bucket."""
    good_image, bad_image = big_image(distribution_upstream), big_image(distribution_upstream, 3 << 20)
    good, bad = good_image.layers[0], bad_image.layers[0]
    data_file = distribution_upstream.blob_file(bad)
    data = data_file.read_bytes()
    data_file.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    options = seaweedfs.options(seaweedfs.prefix())

    async def run() -> None:
        async with local(tmp_path, s3=options) as place:
            fetches = place.worker()
            upstream = Upstream(distribution_upstream.settings())
            try:
                _, chunks = await fetches.fetch(LOCAL, Digest.parse(bad), upstream, bad_image.repository)
                with pytest.raises(UpstreamError, match="hash to"):
                    await read_all(chunks)
                await fetches.idle()
                await place.nothing_stored(Digest.parse(bad))
                assert await fetch_all(fetches, upstream, good_image, good) == good_image.blobs[good]
                assert await place.meta.linked_blob_size(LOCAL, good) == len(good_image.blobs[good])
                async with contextlib.aclosing(place.store.read(Digest.parse(good))) as stored:
                    assert await read_all(stored) == good_image.blobs[good]
            finally:
                await upstream.close()

    asyncio.run(run())


def test_a_lapsed_lease_is_taken_over(distribution_upstream: UpstreamServer, tmp_path: Path) -> None:
    """A holder that died mid-fetch (its lease is never renewed): the fetch is taken over once it lapses."""
    image = distribution_upstream.push_image()
    layer = image.layers[0]

    async def run() -> bytes:
        async with local(tmp_path) as place:
            fetches = place.worker()
            assert await place.meta.acquire_lease(lease_name(Digest.parse(layer)), "dead-worker", 0.5)
            upstream = Upstream(distribution_upstream.settings())
            try:
                return await fetch_all(fetches, upstream, image, layer)
            finally:
                await upstream.close()

    assert asyncio.run(run()) == image.blobs[layer]
    assert distribution_upstream.gets(image.repository, "blobs", layer) == 1


def test_a_leader_that_goes_away_does_not_stop_the_fetch(
    distribution_upstream: UpstreamServer, tmp_path: Path
) -> None:
    image = big_image(distribution_upstream)
    layer = image.layers[0]

    async def run() -> bytes:
        async with local(tmp_path) as place:
            fetches = place.worker()
            upstream = Upstream(distribution_upstream.settings())
            try:
                _, leader = await fetches.fetch(LOCAL, Digest.parse(layer), upstream, image.repository)
                async with contextlib.aclosing(leader):
                    async for _ in leader:
                        break  # the client disconnects after its first chunk
                data = await fetch_all(fetches, upstream, image, layer, repository="cache/other")
                for _ in range(100):  # the leader's repository is linked when the commit ends
                    if await place.meta.linked_blob_size(LOCAL, layer) is not None:
                        break
                    await asyncio.sleep(0.05)
                assert await place.meta.linked_blob_size(LOCAL, layer) == len(image.blobs[layer])
                assert await place.meta.linked_blob_size("cache/other", layer) == len(image.blobs[layer])
                return data
            finally:
                await upstream.close()

    assert asyncio.run(run()) == image.blobs[layer]
    assert distribution_upstream.gets(image.repository, "blobs", layer) == 1


def test_a_reader_behind_the_window_reads_the_rest_from_the_store(
    distribution_upstream: UpstreamServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blob_fetch, "WINDOW", 256 << 10)
    image = big_image(distribution_upstream, 4 << 20)
    layer = image.layers[0]

    async def run() -> bytes:
        async with local(tmp_path) as place:
            fetches = place.worker()
            upstream = Upstream(distribution_upstream.settings())
            try:
                _, chunks = await fetches.fetch(LOCAL, Digest.parse(layer), upstream, image.repository)
                while await place.meta.blob_size(layer) is None:  # a client that reads nothing meanwhile
                    await asyncio.sleep(0.02)
                return await read_all(chunks)
            finally:
                await upstream.close()

    assert asyncio.run(run()) == image.blobs[layer]


def test_wrong_bytes_are_not_stored_and_the_stream_is_cut_short(
    distribution_upstream: UpstreamServer, tmp_path: Path
) -> None:
    image = big_image(distribution_upstream, 3 << 20)
    layer = image.layers[0]
    data_file = distribution_upstream.blob_file(layer)
    good = data_file.read_bytes()
    data_file.write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))  # same size, last byte flipped

    async def run() -> None:
        async with local(tmp_path) as place:
            fetches = place.worker()
            upstream = Upstream(distribution_upstream.settings())
            try:
                received = bytearray()
                size, chunks = await fetches.fetch(LOCAL, Digest.parse(layer), upstream, image.repository)
                with pytest.raises(UpstreamError):
                    async for chunk in chunks:
                        received += chunk
                assert len(received) < size
                await place.nothing_stored(Digest.parse(layer))
                assert await place.meta.linked_blob_size(LOCAL, layer) is None

                data_file.write_bytes(good)  # the upstream is fixed: the next request fetches again
                assert await fetch_all(fetches, upstream, image, layer) == image.blobs[layer]
                assert await place.meta.linked_blob_size(LOCAL, layer) == size
            finally:
                await upstream.close()

    asyncio.run(run())
    assert distribution_upstream.gets(image.repository, "blobs", layer) == 2


def test_a_request_that_goes_away_before_the_first_byte_does_not_stop_the_fetch(
    distribution_upstream: UpstreamServer, tmp_path: Path
) -> None:
    """The client of a fetch leaves before its first byte: the fetch goes on, and a second request, from
    another repository, joins it."""
    image = big_image(distribution_upstream, 2 << 20)
    layer = image.layers[0]

    async def run() -> bytes:
        async with local(tmp_path) as place:
            fetches = place.worker()
            upstream = Upstream(distribution_upstream.settings())
            try:
                first = asyncio.create_task(fetches.fetch(LOCAL, Digest.parse(layer), upstream, image.repository))
                while not fetches._fetches:
                    await asyncio.sleep(0)
                first.cancel()
                data = await fetch_all(fetches, upstream, image, layer, repository="cache/other")
                assert await place.meta.linked_blob_size(LOCAL, layer) == len(image.blobs[layer])
                return data
            finally:
                await upstream.close()

    assert asyncio.run(run()) == image.blobs[layer]
    assert distribution_upstream.gets(image.repository, "blobs", layer) == 1


def test_wrong_bytes_of_a_small_blob_are_an_error_before_any_byte(
    distribution_upstream: UpstreamServer, tmp_path: Path
) -> None:
    """A small blob is verified before its first byte goes out: the request fails outright (the client gets
    an error status, not a short body), nothing is stored, and the next request fetches again."""
    image = big_image(distribution_upstream, blob_fetch.SMALL_BLOB)
    layer = image.layers[0]
    data_file = distribution_upstream.blob_file(layer)
    good = data_file.read_bytes()
    data_file.write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))

    async def run() -> None:
        async with local(tmp_path) as place:
            fetches = place.worker()
            upstream = Upstream(distribution_upstream.settings())
            try:
                with pytest.raises(UpstreamError, match="hash to"):
                    await fetches.fetch(LOCAL, Digest.parse(layer), upstream, image.repository)
                await fetches.idle()
                await place.nothing_stored(Digest.parse(layer))
                data_file.write_bytes(good)
                assert await fetch_all(fetches, upstream, image, layer) == image.blobs[layer]
            finally:
                await upstream.close()

    asyncio.run(run())
    assert distribution_upstream.gets(image.repository, "blobs", layer) == 2


def test_a_short_body_of_a_small_blob_is_an_error_and_nothing_is_kept(
    distribution_upstream: UpstreamServer, tmp_path: Path
) -> None:
    """An upstream whose body is shorter than its Content-Length (the connection cut): an error, no blob."""
    image = big_image(distribution_upstream, 512 << 10)
    layer = image.layers[0]
    data_file = distribution_upstream.blob_file(layer)
    data_file.write_bytes(data_file.read_bytes()[: -1000])  # Distribution announces the size it stored

    async def run() -> None:
        async with local(tmp_path) as place:
            fetches = place.worker()
            upstream = Upstream(distribution_upstream.settings())
            try:
                with pytest.raises(UpstreamError) as caught:
                    await fetches.fetch(LOCAL, Digest.parse(layer), upstream, image.repository)
                await fetches.idle()
                assert "before the end" in str(caught.value)
                await place.nothing_stored(Digest.parse(layer))
            finally:
                await upstream.close()

    asyncio.run(run())


def test_a_stored_blob_is_linked_after_a_head_without_a_get(
    distribution_upstream: UpstreamServer, tmp_path: Path
) -> None:
    image = distribution_upstream.push_image()
    layer = image.layers[0]
    # the same layer in a second upstream repository; a third upstream repository lacks it
    other = distribution_upstream.push_image(layers=[image.blobs[layer]])
    lacking = distribution_upstream.push_image()

    async def run() -> None:
        async with local(tmp_path) as place:
            fetches = place.worker()
            upstream = Upstream(distribution_upstream.settings())
            try:
                assert await fetch_all(fetches, upstream, image, layer) == image.blobs[layer]
                assert await fetch_all(fetches, upstream, other, layer, "cache/other") == image.blobs[layer]
                assert await place.meta.linked_blob_size("cache/other", layer) == len(image.blobs[layer])
                with pytest.raises(BlobUnknown):
                    await fetches.fetch("cache/lacking", Digest.parse(layer), upstream, lacking.repository)
                assert await place.meta.repository_id("cache/lacking") is None
                assert upstream.counts["blob"] == 1
            finally:
                await upstream.close()

    asyncio.run(run())
    assert distribution_upstream.gets(other.repository, "blobs", layer) == 0
    assert any(method == "HEAD" and path == f"/v2/{other.repository}/blobs/{layer}"
               for method, path, _ in distribution_upstream.requests())


def test_a_range_of_a_blob_not_stored_is_asked_upstream_and_not_stored(
    distribution_upstream: UpstreamServer, tmp_path: Path
) -> None:
    image = distribution_upstream.push_image()
    layer = image.layers[0]
    data = image.blobs[layer]

    async def run() -> None:
        async with local(tmp_path) as place:
            fetches = place.worker()
            upstream = Upstream(distribution_upstream.settings())
            try:
                size, chunks = await fetches.fetch(LOCAL, Digest.parse(layer), upstream, image.repository, 100, 1000)
                assert size == len(data)
                assert await read_all(chunks) == data[100:1100]
                size, chunks = await fetches.fetch(LOCAL, Digest.parse(layer), upstream, image.repository, 4000)
                assert await read_all(chunks) == data[4000:]
                await place.nothing_stored(Digest.parse(layer))
            finally:
                await upstream.close()

    asyncio.run(run())
    assert [status for method, path, status in distribution_upstream.requests()
            if method == "GET" and path == f"/v2/{image.repository}/blobs/{layer}"] == [206, 206]


def test_a_blob_the_upstream_lacks_is_unknown(distribution_upstream: UpstreamServer, tmp_path: Path) -> None:
    image = distribution_upstream.push_image()

    async def run() -> None:
        async with local(tmp_path) as place:
            fetches = place.worker()
            upstream = Upstream(distribution_upstream.settings())
            try:
                with pytest.raises(BlobUnknown):
                    await fetches.fetch(LOCAL, Digest.of(b"never pushed"), upstream, image.repository)
                await place.nothing_stored(Digest.of(b"never pushed"))
            finally:
                await upstream.close()

    asyncio.run(run())


def test_a_stopped_upstream_fails_the_fetch_quickly(
    start_distribution_upstream: Callable[[], UpstreamServer], tmp_path: Path
) -> None:
    server = start_distribution_upstream()
    image = server.push_image()
    server.stop()

    async def run() -> None:
        async with local(tmp_path) as place:
            fetches = place.worker()
            upstream = Upstream(server.settings())
            try:
                loop = asyncio.get_running_loop()
                started = loop.time()
                with pytest.raises(UpstreamError):
                    await fetches.fetch(LOCAL, Digest.parse(image.layers[0]), upstream, image.repository)
                assert loop.time() - started < 1.0
                await place.nothing_stored(Digest.parse(image.layers[0]))
            finally:
                await upstream.close()

    asyncio.run(run())


def test_a_fetch_held_elsewhere_too_long_is_streamed_uncached(
    distribution_upstream: UpstreamServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker holds the lease and renews it, but the blob does not arrive: after the wait,
    the blob is streamed straight from the upstream (verified), and not stored."""
    monkeypatch.setattr(blob_fetch, "WAIT_SECONDS", 0.3)
    image = distribution_upstream.push_image()
    layer = image.layers[0]

    async def run() -> bytes:
        async with local(tmp_path) as place:
            fetches = place.worker()
            assert await place.meta.acquire_lease(lease_name(Digest.parse(layer)), "busy-worker", 60)
            upstream = Upstream(distribution_upstream.settings())
            try:
                data = await fetch_all(fetches, upstream, image, layer)
                await place.nothing_stored(Digest.parse(layer))
                return data
            finally:
                await upstream.close()

    assert asyncio.run(run()) == image.blobs[layer]
    assert distribution_upstream.gets(image.repository, "blobs", layer) == 1
