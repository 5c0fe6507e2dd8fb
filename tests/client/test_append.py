"""append, flatten and export against cargohold and Distribution 2.8, read back by skopeo and podman."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import zstandard

from cargohold.client import ClientError, Reference, RegistryClient, push
from cargohold.client.append import append
from cargohold.client.cache import BlobCache
from cargohold.client.flatten import export, flatten
from cargohold.client.layers import DOCKER_LAYER_UNCOMPRESSED, decompressed
from cargohold.digest import Digest
from cargohold.formats import MediaType, Platform
from tests.interop.tools import Clients
from tests.support.requirements import requires_tool

from .cli_support import isolated, run  # noqa: F401 - isolated is an autouse fixture
from .conftest import RunningRegistry
from .images import multiarch, write_layout
from .layer_tars import BASE, EXPECTED, TOP, Found, directory, file, push_image, read_tree, tar_bytes, whiteout


def manifest_and_config(client: RegistryClient, ref: Reference) -> tuple[dict[str, Any], dict[str, Any]]:
    manifest = json.loads(client.get_manifest(ref).raw)
    config = json.loads(client.read_blob(ref, Digest.parse(manifest["config"]["digest"])))
    return manifest, config


def exported(client: RegistryClient, ref: Reference, cache: BlobCache) -> dict[str, Found]:
    out = io.BytesIO()
    export(client, ref, out, cache=cache)
    out.seek(0)
    return read_tree(out)


@pytest.fixture()
def blob_requests(client: RegistryClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """``METHOD /v2/.../blobs/...`` of every blob request the client sends, fast path included."""
    seen: list[str] = []

    def record(request: httpx.Request) -> None:
        if "/blobs/" in request.url.path:
            seen.append(f"{request.method} {request.url.path}")

    client.http.event_hooks["request"].append(record)
    direct_get = client.direct.get

    def record_direct(url: str, headers: Any) -> Any:
        if "/blobs/" in url:
            seen.append(f"GET {httpx.URL(url).path}")
        return direct_get(url, headers)

    monkeypatch.setattr(client.direct, "get", record_direct)
    yield seen


def layer_files(tmp_path: Path) -> tuple[Path, Path, Path, list[bytes]]:
    tars = [
        tar_bytes(directory("plain"), file("plain/one", "from a plain tar")),
        tar_bytes(directory("gz"), file("gz/two", "from a gzip file")),
        tar_bytes(directory("zst"), file("zst/three", "from a zstd file"), whiteout("shared")),
    ]
    plain, gz, zst = tmp_path / "one.tar", tmp_path / "two.tar.gz", tmp_path / "three.tar.zst"
    plain.write_bytes(tars[0])
    gz.write_bytes(gzip.compress(tars[1]))
    zst.write_bytes(zstandard.ZstdCompressor().compress(tars[2]))
    return plain, gz, zst, tars


def test_append_to_an_oci_image_moves_only_the_new_layers(
    registry: RunningRegistry,
    client: RegistryClient,
    tmp_path: Path,
    cache: BlobCache,
    blob_requests: list[str],
) -> None:
    ref = Reference.parse(registry.ref(registry.repo(), "v1"))
    before, config_before = push_image(client, ref, [BASE, TOP])
    old_layers = json.loads(client.get_manifest(ref).raw)["layers"]
    plain, gz, zst, tars = layer_files(tmp_path)
    blob_requests.clear()
    result = append(client, ref, [plain, gz, zst])
    assert not [r for r in blob_requests for layer in old_layers if layer["digest"] in r]  # not one request
    assert result.destination == Reference(ref.registry, ref.repository, "v1", result.digest)
    assert result.blobs_uploaded == 4  # three layers and the config
    manifest, config = manifest_and_config(client, ref)
    assert client.get_manifest(ref).digest == result.digest != before
    assert manifest["mediaType"] == MediaType.OCI_MANIFEST and manifest["layers"][:2] == old_layers
    added = manifest["layers"][2:]
    assert [layer["mediaType"] for layer in added] == [
        MediaType.OCI_LAYER_GZIP,  # a plain tar, gzipped as asked by default
        MediaType.OCI_LAYER_GZIP,  # kept byte for byte
        MediaType.OCI_LAYER_ZSTD,
    ]
    assert added[1]["digest"] == str(Digest.of(gz.read_bytes()))
    assert added[2]["digest"] == str(Digest.of(zst.read_bytes()))
    plain_blob = client.read_blob(ref, Digest.parse(added[0]["digest"]), limit=1 << 20)
    assert gzip.decompress(plain_blob) == tars[0]
    assert config["rootfs"]["diff_ids"] == config_before["rootfs"]["diff_ids"] + [str(Digest.of(t)) for t in tars]
    assert len(config["history"]) == 5
    assert [h["created_by"] for h in config["history"][2:]] == [
        "cargohold append one.tar",
        "cargohold append two.tar.gz",
        "cargohold append three.tar.zst",
    ]
    assert config["config"] == config_before["config"]
    tree = exported(client, ref, cache)
    assert {p: f.kind for p, f in tree.items()} == {
        **{k: v for k, v in EXPECTED.items() if k != "shared"},
        "shared-link": "file",  # its target was whited out above it: the link holds the content now
        "plain": "dir",
        "plain/one": "file",
        "gz": "dir",
        "gz/two": "file",
        "zst": "dir",
        "zst/three": "file",
    }
    assert tree["shared-link"].data == b"linked content"


def test_append_to_a_docker_image_keeps_docker_media_types_and_refuses_zstd(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    ref = Reference.parse(registry.ref(registry.repo(), "v1"))
    before, _ = push_image(client, ref, [BASE], docker=True)
    plain, gz, zst, _ = layer_files(tmp_path)
    for files, compression in (([zst], "gzip"), ([plain], "zstd")):
        with pytest.raises(ClientError, match="Docker schema 2 image has no zstd layer type"):
            append(client, ref, files, compression=compression)  # type: ignore[arg-type]
    assert client.get_manifest(ref).digest == before  # nothing was pushed
    new = ref.with_tag("v2")
    result = append(client, ref, [plain, gz], tag=new, compression="none")
    manifest, config = manifest_and_config(client, new)
    assert manifest["mediaType"] == result.media_type == MediaType.DOCKER_MANIFEST
    assert manifest["config"]["mediaType"] == MediaType.DOCKER_CONFIG
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        MediaType.DOCKER_LAYER,
        DOCKER_LAYER_UNCOMPRESSED,
        MediaType.DOCKER_LAYER,
    ]
    assert manifest["layers"][1]["digest"] == str(Digest.of(plain.read_bytes()))  # kept uncompressed
    assert client.get_manifest(ref).digest == before  # --tag leaves the source tag alone


def test_append_into_another_repository_mounts_the_image_layers(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, blob_requests: list[str]
) -> None:
    ref = Reference.parse(registry.ref(registry.repo(), "v1"))
    push_image(client, ref, [BASE, TOP])
    layers = [layer["digest"] for layer in json.loads(client.get_manifest(ref).raw)["layers"]]
    plain, _, _, _ = layer_files(tmp_path)
    other = Reference.parse(registry.ref(registry.repo(), "appended"))
    blob_requests.clear()
    result = append(client, ref, [plain], tag=other)
    assert result.blobs_mounted == 2 and result.blobs_uploaded == 2
    assert not [r for r in blob_requests if r.startswith("GET ") and r.rpartition("/")[2] in layers]
    assert len(json.loads(client.get_manifest(other).raw)["layers"]) == 3


def test_flatten_applies_the_layers_into_one(
    registry: RunningRegistry, client: RegistryClient, cache: BlobCache
) -> None:
    ref = Reference.parse(registry.ref(registry.repo(), "v1"))
    _, config_before = push_image(client, ref, [BASE, TOP])
    before = exported(client, ref, cache)
    assert {p: f.kind for p, f in before.items()} == EXPECTED
    flat = ref.with_tag("flat")
    result = flatten(client, ref, cache=cache, tag=flat)
    manifest, config = manifest_and_config(client, flat)
    assert len(manifest["layers"]) == 1 and manifest["layers"][0]["mediaType"] == MediaType.OCI_LAYER_GZIP
    blob = client.read_blob(flat, Digest.parse(manifest["layers"][0]["digest"]), limit=1 << 20)
    assert config["rootfs"]["diff_ids"] == [str(Digest.of(b"".join(decompressed([blob]))))]
    assert len(config["history"]) == 1 and "flatten" in config["history"][0]["created_by"]
    assert config["config"] == config_before["config"]
    assert result.digest == client.get_manifest(flat).digest
    assert exported(client, flat, cache) == before
    tar = gzip.decompress(blob)
    with tarfile.open(fileobj=io.BytesIO(tar)) as one:
        assert not [name for name in one.getnames() if ".wh." in name]


def test_an_index_is_refused_where_an_image_is_needed(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, cache: BlobCache
) -> None:
    ref = Reference.parse(registry.ref(registry.repo(), "multi"))
    push(client, write_layout(tmp_path / "src", multiarch(), "multi"), "multi", ref, all_platforms=True)
    plain, _, _, _ = layer_files(tmp_path)
    with pytest.raises(ClientError, match="is an index of 2 images; append needs one image"):
        append(client, ref, [plain])
    with pytest.raises(ClientError, match="flatten needs one image"):
        flatten(client, ref, cache=cache)


# the command line


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_cli_append_flatten_export_json(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = Reference.parse(registry.ref(registry.repo(), "v1"))
    push_image(client, ref, [BASE])
    plain, gz, _, tars = layer_files(tmp_path)
    appended = run_json(capsys, "append", str(ref), "--layer", str(plain), "--layer", str(gz), "-t", "v2")
    assert appended["destination"] == f"{ref.with_tag('v2')}@{appended['digest']}"
    assert appended["digest"] == str(client.get_manifest(ref.with_tag("v2")).digest)
    assert appended["layers"] == 3 and appended["blobsUploaded"] == 3
    assert [a["diffID"] for a in appended["added"]] == [str(Digest.of(t)) for t in tars[:2]]
    assert [a["source"] for a in appended["added"]] == [str(plain), str(gz)]
    flat = run_json(capsys, "flatten", str(ref.with_tag("v2")), "--tag", str(ref.with_tag("flat")))
    assert flat["layers"] == 1 and len(flat["added"]) == 1
    out = tmp_path / "rootfs.tar"
    done = run_json(capsys, "export", str(ref.with_tag("flat")), "-o", str(out))
    assert done == {
        "reference": str(ref.with_tag("flat").with_digest(Digest.parse(flat["digest"]))),
        "digest": flat["digest"],
        "output": str(out),
        "layers": 1,
        "entries": len(read_tree(out.read_bytes())),
    }
    assert set(read_tree(out.read_bytes())) >= {"plain/one", "gz/two", "etc/os-release"}


def test_cli_bad_inputs_get_one_line(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = Reference.parse(registry.ref(registry.repo(), "v1"))
    before, _ = push_image(client, ref, [BASE])
    (tmp_path / "notes.txt").write_text("not a tar\n" * 100)
    index = Reference.parse(registry.ref(registry.repo(), "multi"))
    push(client, write_layout(tmp_path / "src", multiarch(), "multi"), "multi", index, all_platforms=True)
    unsafe = Reference.parse(registry.ref(registry.repo(), "unsafe"))
    push_image(client, unsafe, [BASE, tar_bytes(file("../etc/passwd", "root::0:0:::\n"))])
    out = tmp_path / "out" / "rootfs.tar"
    for argv, message in (
        (["append", str(ref), "--layer", str(tmp_path / "missing.tar")], "missing.tar: no such file"),
        (["append", str(ref), "--layer", str(tmp_path / "notes.txt")], "notes.txt is not a tar"),
        (["append", str(index), "--layer", str(tmp_path / "notes.txt")], "is an index of 2 images"),
        (["flatten", str(index)], "is an index of 2 images; flatten needs one image"),
        (["flatten", str(ref), "--tag", "127.0.0.1:1/other/repo:t"], "is on another registry than 127.0.0.1:1"),
        (["export", str(unsafe), "-o", str(out)], "'../etc/passwd' has a '..' component"),
        (["append", str(ref), "--layer", str(tmp_path / "notes.txt"), "--tag", "a@b"], "cargohold: error:"),
    ):
        code, stdout, err = run(capsys, *argv)
        assert code == 1 and stdout == "", argv
        assert err.startswith("cargohold: error: ") and err.count("\n") == 1, err
        assert message in err, err
    assert client.get_manifest(ref).digest == before
    assert not out.exists() and list(out.parent.iterdir()) == []  # no partial output left behind


# other clients read what append and flatten push


@requires_tool("skopeo")
@requires_tool("podman")
@requires_tool("buildah")
def test_skopeo_podman_and_buildah_read_appended_and_flattened_images(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, cache: BlobCache
) -> None:
    clients = Clients(tmp_path / "clients", [registry.host])
    try:
        for docker in (False, True):
            ref = Reference.parse(registry.ref(registry.repo(), "v1"))
            push_image(client, ref, [BASE, TOP], docker=docker)
            plain, gz, zst, _ = layer_files(tmp_path)
            appended = append(client, ref, [plain, gz] if docker else [plain, gz, zst], tag=ref.with_tag("app"))
            flat = flatten(client, ref.with_tag("app"), cache=cache, tag=ref.with_tag("flat"))
            for result in (appended, flat):
                tagged = str(result.destination.with_tag(result.destination.tag or ""))  # the tag alone
                where = f"docker://{tagged}"
                info = clients.skopeo.inspect(where)
                assert info["Digest"] == str(result.digest) and info["Labels"] == {"base": "yes"}
                assert len(info["Layers"]) == result.layers
                clients.skopeo.copy(where, f"oci:{tmp_path / 'copied'}:{result.destination.tag}")
                # podman checks each layer's diff ID against the config as it stores it
                clients.podman.run("pull", "--tls-verify=false", "-q", tagged)
                inspected = json.loads(clients.podman.out("image", "inspect", tagged))[0]
                assert len(inspected["RootFS"]["Layers"]) == result.layers
                config = json.loads(clients.skopeo.out("inspect", "--config", "--tls-verify=false", where))
                assert inspected["RootFS"]["Layers"] == config["rootfs"]["diff_ids"]
                container = clients.buildah.out("from", "--pull-never", tagged).strip()
                built = json.loads(clients.buildah.out("inspect", container))
                history = [entry.get("created_by", "") for entry in built["OCIv1"]["history"]]
                assert history[-1].startswith("cargohold flatten" if result is flat else "cargohold append")
                clients.buildah.run("rm", container)
    finally:
        clients.close()


def test_export_of_an_index_takes_the_platform_asked_for(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, cache: BlobCache
) -> None:
    index = multiarch()
    ref = Reference.parse(registry.ref(registry.repo(), "multi"))
    push(client, write_layout(tmp_path / "src", index, "multi"), "multi", ref, all_platforms=True)
    for platform, child in ((Platform("arm64", "linux", "v8"), 1), (Platform("amd64", "linux"), 0)):
        out = io.BytesIO()
        result = export(client, ref, out, cache=cache, platform=platform)
        entry = json.loads(index.manifest)["manifests"][child]
        assert str(result.digest) == entry["digest"] and result.layers == 1
        manifest = json.loads(index.blobs[Digest.parse(entry["digest"])])
        layer = index.blobs[Digest.parse(manifest["layers"][0]["digest"])]
        assert read_tree(out.getvalue()) == read_tree(gzip.decompress(layer))


def test_export_of_a_schema1_image_applies_its_layers_base_first(
    registry: RunningRegistry, client: RegistryClient, cache: BlobCache
) -> None:
    from .test_convert import push_schema1_image

    ref = Reference.parse(registry.ref(registry.repo("s1"), "old"))
    push_schema1_image(client, ref)
    out = io.BytesIO()
    result = export(client, ref, out, cache=cache)
    assert result.layers == 2  # the throwaway entry's empty layer is left out
    tree = read_tree(out.getvalue())
    assert set(tree) == {"base.bin", "app.bin"} and len(tree["app.bin"].data) == 200_000
