"""Schema 1 -> Docker schema 2 conversion on copy, against both registries, read back by skopeo."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
import zlib
from pathlib import Path

import pytest

from cargohold.cli.main import main
from cargohold.client import ClientError, Reference, RegistryClient, blob_uploads, blobs, check
from cargohold.client.convert import DiffIDHasher, v1_layers
from cargohold.client.copy import copy
from cargohold.client.layers import INFLATE_STEP
from cargohold.digest import Digest
from cargohold.formats import MediaType, parse_manifest
from cargohold.formats.schema1 import generate_key, sign
from tests.support.requirements import requires_tool

from .conftest import RunningRegistry
from .images import layer_bytes

EMPTY_TAR_GZ = gzip.compress(b"\0" * 1024, mtime=0)  # what docker pushes for a throwaway entry


def v1(identity: str, parent: str | None, command: str, **extra: object) -> str:
    entry: dict[str, object] = {
        "id": identity * 64,
        "created": f"2020-01-0{len(identity)}T00:00:00Z",
        "container_config": {"Cmd": ["/bin/sh", "-c", command]},
        **extra,
    }
    if parent:
        entry["parent"] = parent * 64
    return json.dumps(entry)


def push_schema1_image(client: RegistryClient, ref: Reference) -> list[Digest]:
    """A signed schema 1 image: two real gzip tar layers under a throwaway CMD entry; returns diff IDs."""
    base, base_diff = layer_bytes(3000, "base.bin")
    app, app_diff = layer_bytes(200_000, "app.bin")
    for blob in (base, app, EMPTY_TAR_GZ):
        blob_uploads.upload(client, ref, Digest.of(blob), len(blob), [blob])
    top_config = {
        "architecture": "amd64",
        "os": "linux",
        "author": "tester",
        "config": {"Cmd": ["/app"], "Env": ["PATH=/usr/bin"], "Labels": {"converted": "yes"}},
        "throwaway": True,
        "Size": 0,
    }
    payload = {
        "schemaVersion": 1,
        "name": ref.repository,
        "tag": ref.tag,
        "architecture": "amd64",
        "fsLayers": [{"blobSum": str(Digest.of(b))} for b in (EMPTY_TAR_GZ, app, base)],
        "history": [
            {"v1Compatibility": v1("ccc", "bb", '#(nop) CMD ["/app"]', **top_config)},
            {"v1Compatibility": v1("bb", "a", "cp app.bin /")},
            {"v1Compatibility": v1("a", None, "#(nop) ADD file:base.bin in /")},
        ],
    }
    client.put_manifest(ref, sign(payload, generate_key()), MediaType.DOCKER_SCHEMA1_SIGNED)
    return [base_diff, app_diff]


def assert_converted(client: RegistryClient, dst: Reference, diff_ids: list[Digest]) -> Digest:
    fetched = client.get_manifest(dst)
    assert fetched.media_type == MediaType.DOCKER_MANIFEST
    manifest = parse_manifest(fetched.raw, fetched.media_type)
    assert manifest.config is not None and manifest.config.media_type == MediaType.DOCKER_CONFIG
    assert [d.media_type for d in manifest.layers] == [MediaType.DOCKER_LAYER] * 2
    config = json.loads(client.read_blob(dst, manifest.config.digest))
    assert config["rootfs"] == {"type": "layers", "diff_ids": [str(d) for d in diff_ids]}
    # each layer's uncompressed bytes hash to its diff ID
    for layer, diff_id in zip(manifest.layers, diff_ids, strict=True):
        raw = b"".join(blobs.stream(client, dst, layer.digest, layer.size))
        assert Digest.of(gzip.decompress(raw)) == diff_id
    assert config["history"] == [
        {"created": "2020-01-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:base.bin in /"},
        {"created": "2020-01-02T00:00:00Z", "created_by": "/bin/sh -c cp app.bin /"},
        {
            "created": "2020-01-03T00:00:00Z",
            "author": "tester",
            "created_by": '/bin/sh -c #(nop) CMD ["/app"]',
            "empty_layer": True,
        },
    ]
    assert not {"id", "parent", "Size", "throwaway"} & set(config)
    assert (config["architecture"], config["os"], config["config"]["Cmd"]) == ("amd64", "linux", ["/app"])
    assert check(client, dst).ok
    return fetched.digest


def test_convert_copy_builds_a_valid_schema2_image(
    registry: RunningRegistry, distribution: RunningRegistry, client: RegistryClient
) -> None:
    src = Reference.parse(registry.ref(registry.repo("s1"), "old"))
    diff_ids = push_schema1_image(client, src)
    # within the registry: layers are mounted, then read once more for their diff IDs
    here = Reference.parse(registry.ref(registry.repo("s2"), "new"))
    result = copy(client, src, here, convert_schema2=True)
    assert result.media_type == MediaType.DOCKER_MANIFEST
    assert (result.blobs_mounted, result.blobs_transferred) == (2, 1)  # the config is new
    digest = assert_converted(client, here, diff_ids)
    # to another registry: layers stream through once, hashed compressed and uncompressed
    there = Reference.parse(distribution.ref(distribution.repo("s2"), "new"))
    result = copy(client, src, there, convert_schema2=True)
    assert result.blobs_transferred == 3  # two layers and the config; the throwaway blob is left behind
    assert assert_converted(client, there, diff_ids) == digest  # deterministic: same image, same digest
    # without the option, a schema 1 copy stays schema 1
    plain = Reference.parse(registry.ref(registry.repo("s1"), "plain"))
    copy(client, src, plain)
    assert client.get_manifest(plain).media_type == MediaType.DOCKER_SCHEMA1_SIGNED


@requires_tool("skopeo")
def test_cli_convert_copy_is_readable_by_skopeo(
    registry: RunningRegistry, client: RegistryClient, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    src = Reference.parse(registry.ref(registry.repo("s1"), "old"))
    diff_ids = push_schema1_image(client, src)
    dst = registry.ref(registry.repo("s2cli"), "v2")
    assert main(["copy", "--convert-schema2", "--json", str(src), dst]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mediaType"] == MediaType.DOCKER_MANIFEST
    inspected = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{dst}"], check=True, capture_output=True, text=True
    )
    info = json.loads(inspected.stdout)
    assert info["Digest"] == result["digest"] and info["Labels"] == {"converted": "yes"}
    assert len(info["Layers"]) == 2
    config = subprocess.run(
        ["skopeo", "inspect", "--config", "--tls-verify=false", f"docker://{dst}"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert json.loads(config.stdout)["rootfs"]["diff_ids"] == [str(d) for d in diff_ids]
    # skopeo can also copy it out, verifying every blob
    subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", f"docker://{dst}", f"oci:{tmp_path / 'out'}:x"],
        check=True,
        capture_output=True,
    )


def tar_of(size: int) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("f")
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    return raw.getvalue()


def diff_id_of(blob: bytes, step: int) -> Digest:
    hasher = DiffIDHasher()
    for i in range(0, len(blob), step):
        hasher.update(blob[i : i + step])
    return hasher.finish()


def test_diff_id_hasher_formats() -> None:
    first, second = tar_of(5000), tar_of(7000)
    expected = Digest("sha256", hashlib.sha256(first + second).hexdigest())
    multi_member = gzip.compress(first) + gzip.compress(second)
    for step in (1, 7, 4096, len(multi_member)):
        assert diff_id_of(multi_member, step) == expected
    assert diff_id_of(first + second, 1000) == expected  # an uncompressed layer is its own diff ID
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bomb.compress(b"\0" * (3 * INFLATE_STEP + 5)) + bomb.flush()
    assert diff_id_of(zeros, len(zeros)) == Digest.of(b"\0" * (3 * INFLATE_STEP + 5))
    with pytest.raises(ClientError, match="truncated"):
        diff_id_of(multi_member[:-10], 100)
    with pytest.raises(ClientError, match="zstd"):
        diff_id_of(b"\x28\xb5\x2f\xfd" + b"\0" * 10, 3)


def test_repeated_v1_ids_collapse() -> None:
    layer = {"blobSum": "sha256:" + "1" * 64}
    history = [{"v1Compatibility": json.dumps({"id": i * 64})} for i in ("b", "b", "a")]
    payload = json.dumps({"fsLayers": [layer] * 3, "history": history}).encode()
    assert [entry.v1["id"][0] for entry in v1_layers(payload)] == ["b", "a"]
