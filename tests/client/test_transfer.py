"""Push, pull, copy and sync against real registries: byte-identical round trips, cache, resume."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest

from cargohold.client import OCILayout, Reference, RegistryClient, StaticKeychain, pull, push
from cargohold.client.cache import BlobCache
from cargohold.client.copy import copy, sync
from cargohold.client.direct import BodyReader
from cargohold.client.keychain import Credentials
from cargohold.digest import Digest
from cargohold.formats import Platform

from .conftest import RunningRegistry
from .images import build_image, multiarch, write_layout


def layout_blobs(layout: OCILayout) -> dict[str, bytes]:
    root = layout.path / "blobs" / "sha256"
    return {p.name: p.read_bytes() for p in root.iterdir() if not p.name.startswith(".")}


def test_push_pull_round_trip_is_byte_identical(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, cache: BlobCache
) -> None:
    image = build_image((3000, 200_000))
    src = write_layout(tmp_path / "src", image, "v1")
    ref = Reference.parse(registry.ref(registry.repo()))
    pushed = push(client, src, "v1", ref, cache=cache)
    assert pushed.digest == image.digest
    assert pushed.blobs_transferred == 3
    assert client.get_manifest(ref).raw == image.manifest
    dst = OCILayout(tmp_path / "dst")
    pulled = pull(client, ref, dst, tag="v1", cache=cache)
    assert pulled.digest == image.digest
    assert layout_blobs(dst) == layout_blobs(src)
    assert dst.resolve("v1").digest == image.digest
    again = push(client, src, "v1", ref, cache=cache)
    assert again.blobs_transferred == 0 and again.blobs_skipped == 3


def test_repull_fetches_only_missing_blobs(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, cache: BlobCache
) -> None:
    image = build_image((1000, 2000))
    ref = Reference.parse(registry.ref(registry.repo()))
    push(client, write_layout(tmp_path / "src", image, "v1"), "v1", ref, cache=BlobCache(tmp_path / "c0"))
    first = pull(client, ref, OCILayout(tmp_path / "a"), tag="v1", cache=cache)
    assert first.blobs_transferred == 3
    second = pull(client, ref, OCILayout(tmp_path / "b"), tag="v1", cache=cache)
    assert second.blobs_transferred == 0 and second.blobs_skipped == 3


def test_interrupted_download_resumes_with_range(
    registry: RunningRegistry,
    client: RegistryClient,
    tmp_path: Path,
    cache: BlobCache,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = build_image((300_000,))
    ref = Reference.parse(registry.ref(registry.repo()))
    push(client, write_layout(tmp_path / "src", image, "v1"), "v1", ref, cache=BlobCache(tmp_path / "c0"))
    layer = max(image.blobs, key=lambda d: len(image.blobs[d]))
    data = image.blobs[layer]
    partial = cache.partial_path(layer)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(data[: len(data) // 2])  # what an interrupted pull leaves behind
    ranges: list[str] = []

    def record(request: httpx.Request) -> None:
        if "/blobs/" in request.url.path and "Range" in request.headers:
            ranges.append(request.headers["Range"])

    def record_direct(url: str, headers: Mapping[str, str]) -> BodyReader | None:
        if "/blobs/" in url and "Range" in headers:
            ranges.append(headers["Range"])
        return direct_get(url, headers)

    # blob bodies take the fast path (client/direct.py) unless it declines: watch both
    client.http.event_hooks["request"].append(record)
    direct_get = client.direct.get
    monkeypatch.setattr(client.direct, "get", record_direct)
    dst = OCILayout(tmp_path / "dst")
    pull(client, ref, dst, tag="v1", cache=cache)
    assert ranges == [f"bytes={len(data) // 2}-"]
    assert dst.blob_path(layer).read_bytes() == data
    assert not partial.exists()


def test_index_single_platform_and_all_platforms(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, cache: BlobCache
) -> None:
    index = multiarch()
    ref = Reference.parse(registry.ref(registry.repo(), "multi"))
    assert (
        push(client, write_layout(tmp_path / "src", index, "multi"), "multi", ref, cache=cache).digest == index.digest
    )
    one = OCILayout(tmp_path / "arm")
    result = pull(client, ref, one, tag="x", platform=Platform("arm64", "linux"), cache=cache)
    arm = json.loads(index.manifest)["manifests"][1]
    assert str(result.digest) == arm["digest"]
    every = OCILayout(tmp_path / "all")
    assert pull(client, ref, every, tag="x", all_platforms=True, cache=cache).digest == index.digest
    assert every.read_blob(index.digest) == index.manifest


def test_copy_between_registries_both_ways(
    registry: RunningRegistry, distribution: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    index = multiarch()
    a = Reference.parse(registry.ref(registry.repo(), "multi"))
    push(client, write_layout(tmp_path / "src", index, "multi"), "multi", a, cache=BlobCache(tmp_path / "c"))
    b = Reference.parse(distribution.ref(distribution.repo("copied"), "m2"))
    there = copy(client, a, b, all_platforms=True)
    assert there.digest == index.digest
    assert client.get_manifest(b).raw == index.manifest
    back = a.with_tag("back")
    back = Reference(a.registry, registry.repo("back"), "b1")
    assert copy(client, b, back, all_platforms=True).digest == index.digest
    assert client.get_manifest(back).raw == index.manifest
    # one platform of the index only
    single = Reference(b.registry, b.repository, "amd", None)
    result = copy(client, a, single, platform=Platform("amd64", "linux"))
    assert result.digest == Digest.parse(json.loads(index.manifest)["manifests"][0]["digest"])


def test_copy_within_registry_mounts_blobs(registry: RunningRegistry, client: RegistryClient, tmp_path: Path) -> None:
    image = build_image((5000,))
    src = Reference.parse(registry.ref(registry.repo()))
    push(client, write_layout(tmp_path / "src", image, "v1"), "v1", src, cache=BlobCache(tmp_path / "c"))
    dst = Reference.parse(registry.ref(registry.repo("mounted")))
    result = copy(client, src, dst)
    assert result.digest == image.digest
    assert result.blobs_mounted == 2 and result.blobs_transferred == 0


def test_sync_repository_with_tag_filter(
    registry: RunningRegistry, distribution: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    src = Reference.parse(registry.ref(registry.repo()))
    cache = BlobCache(tmp_path / "c")
    for tag in ("1.0", "1.1", "dev"):
        push(
            client,
            write_layout(tmp_path / tag, build_image((100,)), tag),
            tag,
            src.with_tag(tag),
            cache=cache,
        )
    dst = Reference.parse(distribution.ref(distribution.repo("sync")))
    result = sync(client, src, dst, tag_pattern=r"1\..*")
    assert sorted(result.copied) == ["1.0", "1.1"] and not result.failed
    assert sorted(client.tags(dst)) == ["1.0", "1.1"]
    assert sorted(sync(client, src, dst, tag_pattern=r"1\..*").skipped) == ["1.0", "1.1"]


def test_small_blobs_go_up_in_one_post_where_the_registry_takes_it(registry: RunningRegistry, tmp_path: Path) -> None:
    image = build_image((2000, 3000))  # config and two layers, all far under SINGLE_POST_LIMIT
    ref = Reference.parse(registry.ref(registry.repo()))
    client = RegistryClient(keychain=StaticKeychain(Credentials(), registries=[]), workers=1)  # blobs in order
    sent: list[tuple[str, str]] = []

    def record(request: httpx.Request) -> None:
        if "/blobs/uploads/" in request.url.path:
            sent.append((request.method, "digest" if "digest" in request.url.params else "plain"))

    client.http.event_hooks["request"].append(record)
    push(client, write_layout(tmp_path / "src", image, "v1"), "v1", ref, cache=BlobCache(tmp_path / "c"))
    if registry.kind == "cargohold":  # one request per blob
        assert sent == [("POST", "digest")] * 3
    else:  # Distribution starts a session instead: PUT the body there, and ask plainly from then on
        assert sent[:2] == [("POST", "digest"), ("PUT", "digest")]
        assert sent[2:] == [("POST", "plain"), ("PUT", "digest")] * 2
        assert registry.host in client.single_post_refused
    pulled = OCILayout(tmp_path / "dst")
    pull(client, ref, pulled, tag="v1", cache=BlobCache(tmp_path / "c2"))
    client.close()
    assert all(pulled.blob_path(d).read_bytes() == data for d, data in image.blobs.items())


def test_a_chunk_size_below_the_blob_is_kept(registry: RunningRegistry, tmp_path: Path) -> None:
    image = build_image((3000,))  # the layer is larger than the chunks asked for; the config is not
    ref = Reference.parse(registry.ref(registry.repo()))
    client = RegistryClient(keychain=StaticKeychain(Credentials(), registries=[]), workers=1)
    sent: list[tuple[str, str]] = []

    def record(request: httpx.Request) -> None:
        if "/blobs/uploads/" in request.url.path:
            sent.append((request.method, "digest" if "digest" in request.url.params else "plain"))

    client.http.event_hooks["request"].append(record)
    layout = write_layout(tmp_path / "src", image, "v1")
    push(client, layout, "v1", ref, cache=BlobCache(tmp_path / "c"), chunk_size=1024)
    client.close()
    layer = max(len(data) for data in image.blobs.values())
    assert layer > 1024 and sent.count(("PATCH", "plain")) == -(-layer // 1024)  # in chunks of 1024
    assert sent.count(("POST", "plain")) == 1  # the layer was not offered in one POST
