"""The library against real registries: catalog, tags, inspect, check, tag, delete, errors, auth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cargohold import errcodes
from cargohold.client import (
    OCILayout,
    Reference,
    RegistryClient,
    RegistryResponseError,
    StaticKeychain,
    TransportOptions,
    check,
    inspect,
    ops,
    platforms,
    pull,
    push,
)
from cargohold.client.cache import BlobCache
from cargohold.client.keychain import Credentials
from cargohold.formats import MediaType, Platform

from .conftest import RunningRegistry
from .images import build_image, multiarch, write_layout


def pushed(client: RegistryClient, registry: RunningRegistry, tmp_path: Path, tag: str = "v1", **kw: object):
    image = build_image(**kw)  # type: ignore[arg-type]
    ref = Reference.parse(registry.ref(registry.repo(), tag))
    push(client, write_layout(tmp_path / f"src-{tag}", image, tag), tag, ref, cache=BlobCache(tmp_path / "c"))
    return image, ref


def test_tags_paginate_and_carry_metadata(registry: RunningRegistry, client: RegistryClient, tmp_path: Path) -> None:
    image, ref = pushed(client, registry, tmp_path)
    ops.tag(client, ref, ["a", "b", "c", "d"])
    assert sorted(client.tags(ref, page_size=2)) == ["a", "b", "c", "d", "v1"]
    infos = client.tags_with_metadata(ref, pattern="^[ab]$")
    assert sorted(i.tag for i in infos) == ["a", "b"]
    assert {(i.digest, i.media_type, i.size) for i in infos} == {(image.digest, image.media_type, len(image.manifest))}


def test_catalog_filters(registry: RunningRegistry, client: RegistryClient, tmp_path: Path) -> None:
    _, ref = pushed(client, registry, tmp_path)
    namespace = ref.repository.rpartition("/")[0]
    assert ref.repository in list(client.catalog(registry.host, page_size=1))
    assert client.get_repositories(registry.host, repository_filter=ref.repository.rpartition("/")[2]) == [
        ref.repository
    ]
    assert namespace in client.get_namespaces(registry.host, namespace_filter=f"^{namespace}$")
    assert ref.repository in client.get_repositories(registry.host, namespace_filter=f"^{namespace}$")


def test_inspect_image_and_index(registry: RunningRegistry, client: RegistryClient, tmp_path: Path) -> None:
    image, ref = pushed(client, registry, tmp_path, layer_sizes=(10, 20), labels={"team": "cargo"})
    info = inspect(client, ref)
    assert info.digest == image.digest and info.config.labels == {"team": "cargo"}
    assert info.config.cmd == ["/bin/sh"] and info.config.architecture == "amd64"
    assert [layer.size for layer in info.layers] == [len(image.blobs[d.digest]) for d in info.layers]
    assert info.total_size == len(image.manifest) + sum(len(b) for b in image.blobs.values())
    head = client.head_manifest(ref)
    assert (head.digest, head.media_type, head.size) == (image.digest, MediaType.OCI_MANIFEST, len(image.manifest))

    index = multiarch()
    multi = ref.with_tag("multi")
    push(client, write_layout(tmp_path / "multi", index, "multi"), "multi", multi, cache=BlobCache(tmp_path / "c"))
    entries = platforms(client, multi)
    assert [str(e.platform) for e in entries] == ["linux/amd64", "linux/arm64/v8"]
    arm = inspect(client, multi, Platform("arm64", "linux", "v8"))
    assert arm.config.architecture == "arm64" and arm.index_digest == index.digest


def test_unknown_manifest_is_typed(registry: RunningRegistry, client: RegistryClient, tmp_path: Path) -> None:
    _, ref = pushed(client, registry, tmp_path)
    with pytest.raises(errcodes.ManifestUnknown) as caught:
        client.get_manifest(ref.with_tag("nope"))
    assert isinstance(caught.value, RegistryResponseError)
    assert caught.value.status == 404 and caught.value.code_name == "MANIFEST_UNKNOWN"
    with pytest.raises(errcodes.ManifestUnknown):
        client.head_manifest(ref.with_tag("nope"))


def test_check_reports_missing_blobs(registry: RunningRegistry, client: RegistryClient, tmp_path: Path) -> None:
    image, ref = pushed(client, registry, tmp_path, layer_sizes=(100, 200))
    result = check(client, ref)
    assert result.ok and result.blobs_checked == 3
    layer = json.loads(image.manifest)["layers"][0]["digest"]
    client.delete_blob(ref, Reference.parse(f"x@{layer}").digest)  # type: ignore[arg-type]
    result = check(client, ref)
    assert not result.ok and [str(m.descriptor.digest) for m in result.missing] == [layer]


def test_tag_and_delete_only_that_tag(registry: RunningRegistry, client: RegistryClient, tmp_path: Path) -> None:
    image, ref = pushed(client, registry, tmp_path)
    assert ops.tag(client, ref, ["keep", "drop"]) == image.digest
    result = ops.delete_tag(client, ref.with_tag("drop"))
    assert result.digest == image.digest
    assert sorted(client.tags(ref)) == ["keep", "v1"]
    assert client.head_manifest(ref.with_tag("keep")).digest == image.digest


def test_delete_manifest_and_image(registry: RunningRegistry, client: RegistryClient, tmp_path: Path) -> None:
    image, ref = pushed(client, registry, tmp_path)
    ops.tag(client, ref, ["other"])
    result = ops.delete_manifest(client, ref)
    assert result.digest == image.digest and sorted(result.tags_removed) == ["other", "v1"]
    with pytest.raises(errcodes.ManifestUnknown):
        client.get_manifest(ref.with_digest(image.digest))

    image2, ref2 = pushed(client, registry, tmp_path, tag="v2")
    removed = ops.delete_image(client, ref2)
    assert set(removed.blobs_deleted) == set(image2.blobs)
    assert all(client.blob_size(ref2, d) is None for d in image2.blobs)


def test_basic_auth(auth_registry: RunningRegistry, tmp_path: Path) -> None:
    image = build_image((100,))
    options = TransportOptions(retries=0)
    good = Credentials(auth_registry.username or "", auth_registry.password or "")
    ref = Reference.parse(auth_registry.ref(auth_registry.repo()))
    with RegistryClient(keychain=StaticKeychain(good), options=options) as client:
        push(client, write_layout(tmp_path / "src", image, "v1"), "v1", ref, cache=BlobCache(tmp_path / "c"))
        assert client.tags(ref) == ["v1"]
        pull(client, ref, OCILayout(tmp_path / "dst"), tag="v1", cache=BlobCache(tmp_path / "c2"))
    bad = Credentials(good.username, "wrong")
    with RegistryClient(keychain=StaticKeychain(bad), options=options) as client:
        with pytest.raises(errcodes.Unauthorized) as caught:
            client.tags(ref)
        assert caught.value.status == 401
    anonymous = StaticKeychain(Credentials(), registries=[])
    with RegistryClient(keychain=anonymous, options=options) as client, pytest.raises(errcodes.Unauthorized):
        client.get_manifest(ref)
