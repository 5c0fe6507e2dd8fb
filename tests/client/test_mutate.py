"""``cargohold mutate``: a new config and manifest in the registry, every layer reused and none moved."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cargohold.client import Reference, RegistryClient, push
from cargohold.client.cache import BlobCache
from cargohold.client.mutate import ConfigChanges, parse_command
from cargohold.digest import Digest
from cargohold.formats import MediaType, Platform
from tests.interop.tools import Clients
from tests.support.requirements import requires_tool

from .cli_support import isolated, run  # noqa: F401 - isolated is an autouse fixture
from .conftest import RunningRegistry
from .images import BuiltImage, build_image, build_index, write_layout
from .server_log import assert_no_layer_moved, served_during

#: larger than one request's upload (256 KiB): a layer that moved would show as a PUT or PATCH
BIG = (300_000, 280_000)
AMD64, ARM64 = Platform("amd64", "linux"), Platform("arm64", "linux", "v8")


def put_image(client: RegistryClient, tmp_path: Path, image: BuiltImage, ref: str) -> Reference:
    folder = tmp_path / f"layout-{image.digest.hex[:12]}"
    push(client, write_layout(folder, image, "t"), "t", Reference.parse(ref), cache=BlobCache(tmp_path / "cache"))
    return Reference.parse(ref)


def layers_of(image: BuiltImage) -> set[str]:
    return {layer["digest"] for layer in json.loads(image.manifest)["layers"]}


def document(client: RegistryClient, ref: Reference) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(client.get_manifest(ref).raw)
    return found


def config_of(client: RegistryClient, ref: Reference) -> dict[str, Any]:
    manifest = document(client, ref)
    found: dict[str, Any] = json.loads(client.read_blob(ref, Digest.parse(manifest["config"]["digest"])))
    return found


def mutated(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, "mutate", *argv, "--json")
    assert code == 0, err
    found: dict[str, Any] = json.loads(out)
    return found


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 1 and out == "" and err.count("\n") == 1 and err.startswith("cargohold: error: "), err
    return err


def test_mutate_rewrites_the_config_and_moves_no_layer(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = build_image(BIG)
    ref = put_image(client, tmp_path, image, registry.ref(registry.repo("mutate")))
    before = config_of(client, ref)
    with served_during(registry) as served:
        result = mutated(
            capsys, str(ref), "--label", "org.example.k=v", "--label", "test=no", "--env", "PATH=/bin",
            "--env", "MODE=a=b", "--entrypoint", '["/bin/sh", "-c"]', "--cmd", "echo hi", "--user", "1000:1000",
            "--workdir", "/srv", "--annotation", "org.opencontainers.image.version=2",
        )
    manifest = document(client, ref)
    assert result["digest"] == str(client.head_manifest(ref).digest) != str(image.digest)  # the tag moved
    assert result["reference"] == str(ref) and result["mediaType"] == MediaType.OCI_MANIFEST
    assert manifest["mediaType"] == MediaType.OCI_MANIFEST
    assert manifest["layers"] == json.loads(image.manifest)["layers"]  # every layer reused as it was
    assert manifest["annotations"] == {"org.opencontainers.image.version": "2"}
    assert result["images"][0]["config"] == manifest["config"]["digest"]
    assert result["images"][0]["platform"] == "linux/amd64"  # from the config
    after = config_of(client, ref)
    assert after["config"] == {
        "Env": ["PATH=/bin", "MODE=a=b"],  # replaced in place, then appended
        "Cmd": ["echo", "hi"],
        "Labels": {"test": "no", "org.example.k": "v"},
        "Entrypoint": ["/bin/sh", "-c"],
        "User": "1000:1000",
        "WorkingDir": "/srv",
    }
    assert {k: v for k, v in after.items() if k != "config"} == {k: v for k, v in before.items() if k != "config"}
    assert_no_layer_moved(served, layers_of(image), {manifest["config"]["digest"]}, mounted=0)


def test_docker_stays_docker_and_has_no_annotations(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = build_image((2000,), docker=True)
    ref = put_image(client, tmp_path, image, registry.ref(registry.repo("mutate")))
    new = registry.ref(registry.repo("mutate"), "new")
    result = mutated(capsys, str(ref), "--tag", new, "--label", "a=b", "--entrypoint", "")
    manifest = document(client, Reference.parse(new))
    assert result["mediaType"] == manifest["mediaType"] == MediaType.DOCKER_MANIFEST
    assert manifest["config"]["mediaType"] == MediaType.DOCKER_CONFIG
    assert config_of(client, Reference.parse(new))["config"]["Entrypoint"] is None
    assert client.head_manifest(ref).digest == image.digest  # --tag leaves the source alone
    err = refused(capsys, "mutate", str(ref), "--annotation", "a=b")
    assert "has no annotations" in err
    assert client.head_manifest(ref).digest == image.digest


def test_every_image_of_an_index_or_one_platform(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    amd64, arm64 = build_image(BIG[:1], architecture="amd64"), build_image(BIG[1:], architecture="arm64", variant="v8")
    index = build_index({AMD64: amd64, ARM64: arm64})
    ref = put_image(client, tmp_path, index, registry.ref(registry.repo("mutate")))
    # one platform: that entry changes, the other stays as it was
    one = mutated(capsys, str(ref), "--platform", "linux/arm64", "--label", "only=arm64")
    entries = document(client, ref)["manifests"]
    assert one["mediaType"] == MediaType.OCI_INDEX and len(one["images"]) == 1
    assert entries[0]["digest"] == str(amd64.digest) and entries[0]["platform"] == AMD64.to_json()
    assert entries[1]["digest"] == one["images"][0]["digest"] and entries[1]["platform"] == ARM64.to_json()
    assert config_of(client, ref.with_digest(Digest.parse(entries[1]["digest"])))["config"]["Labels"]["only"] == "arm64"
    # every image, written to another repository: the layers are mounted there, not moved
    other = Reference.parse(registry.ref(registry.repo("elsewhere"), "all"))
    with served_during(registry) as served:
        every = mutated(capsys, str(ref), "--tag", str(other), "--env", "X=1", "--annotation", "k=v")
    new = document(client, other)
    assert [e["digest"] for e in new["manifests"]] == [i["digest"] for i in every["images"]]
    assert new["annotations"] == {"k": "v"}
    for entry in new["manifests"]:
        child = other.with_digest(Digest.parse(entry["digest"]))
        assert "X=1" in config_of(client, child)["config"]["Env"]
        assert document(client, child)["annotations"] == {"k": "v"}
    configs = {i["config"] for i in every["images"]}
    assert every["blobsMounted"] == 2  # one layer each
    assert_no_layer_moved(served, layers_of(amd64) | layers_of(arm64), configs, mounted=every["blobsMounted"])
    assert client.head_manifest(ref).digest == Digest.parse(one["digest"])  # the source is untouched


def test_bad_input_is_one_line_and_writes_nothing(
    registry: RunningRegistry,
    distribution: RunningRegistry,
    client: RegistryClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = build_image((1000,), architecture="amd64")
    ref = str(put_image(client, tmp_path, image, registry.ref(registry.repo("mutate"))))
    index = put_image(client, tmp_path, build_index({AMD64: image}), registry.ref(registry.repo("mutate")))
    cases = {
        ("--label", "novalue"): "--label: expected KEY=VALUE, got 'novalue'",
        ("--env", "=x"): "--env: expected KEY=VALUE",
        ("--annotation", "k"): "--annotation: expected KEY=VALUE",
        ("--entrypoint", '["/bin/sh", 1]'): "--entrypoint: not a JSON array of strings",
        ("--cmd", "'unclosed"): "--cmd: No closing quotation",
        ("--platform", "linux/arm64", "--label", "a=b"): "is an image for linux/amd64, not linux/arm64",
        ("--platform", "linux", "--label", "a=b"): "invalid platform 'linux'",
        (): "nothing to change",
        ("--tag", f"{distribution.host}/other/repo:1", "--label", "a=b"): "is on another registry",
    }
    for flags, message in cases.items():
        assert message in refused(capsys, "mutate", ref, *flags), flags
    err = refused(capsys, "mutate", str(index), "--platform", "linux/s390x", "--label", "a=b")
    assert "no image for platform linux/s390x" in err and "linux/amd64" in err
    assert client.head_manifest(Reference.parse(ref)).digest == image.digest


def test_changes_apply_as_docker_would() -> None:
    config: dict[str, Any] = {
        "architecture": "amd64", "config": {"Env": ["A=1", "B=2"], "Cmd": ["sh"], "Labels": {"x": "1"}},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]}, "history": [{"created_by": "x"}],
    }
    changed = ConfigChanges(labels={"y": "2"}, env={"B": "3", "C": "4"}, cmd=()).apply(config)
    assert changed["config"] == {"Env": ["A=1", "B=3", "C=4"], "Cmd": None, "Labels": {"x": "1", "y": "2"}}
    assert changed["rootfs"] is config["rootfs"] and changed["history"] is config["history"]
    assert config["config"]["Env"] == ["A=1", "B=2"]  # the input is left alone
    assert parse_command('["a b", "c"]', "--cmd") == ("a b", "c")
    assert parse_command("sh -c 'echo a; echo b'", "--cmd") == ("sh", "-c", "echo a; echo b")
    assert parse_command("", "--cmd") == ()


def test_library_mutate_by_digest_writes_by_digest(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    from cargohold.client.mutate import mutate

    image = build_image((1000,))
    ref = put_image(client, tmp_path, image, registry.ref(registry.repo("mutate")))
    result = mutate(client, Reference(ref.registry, ref.repository, None, image.digest), ConfigChanges(user="nobody"))
    assert result.reference.digest is not None and result.reference.digest != image.digest
    assert client.head_manifest(ref).digest == image.digest  # no tag was named: none moved
    assert config_of(client, result.reference)["config"]["User"] == "nobody"


def test_the_watch_sees_layers_move(registry: RunningRegistry, client: RegistryClient, tmp_path: Path) -> None:
    """The check above can fail: a push, which uploads its layers, does not pass it."""
    image = build_image(BIG)
    with served_during(registry) as served:
        put_image(client, tmp_path, image, registry.ref(registry.repo("mutate")))
    config = json.loads(image.manifest)["config"]["digest"]
    with pytest.raises(AssertionError, match="upload"):
        assert_no_layer_moved(served, layers_of(image), {config}, mounted=0)


@requires_tool("skopeo")
@requires_tool("podman")
@requires_tool("buildah")
def test_skopeo_podman_and_buildah_read_the_result(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    amd64 = build_image((2000,), architecture="amd64")
    docker = build_image((2000,), docker=True)
    index = put_image(client, tmp_path, build_index({AMD64: amd64}), registry.ref(registry.repo("mutate")))
    single = put_image(client, tmp_path, docker, registry.ref(registry.repo("mutate")))
    flags = ("--label", "org.example.mutated=yes", "--env", "GREETING=hi", "--cmd", '["/bin/true"]',
             "--workdir", "/work")
    results = [mutated(capsys, str(index), *flags), mutated(capsys, str(single), *flags)]
    tools = Clients(tmp_path / "tools", [registry.host])
    try:
        for ref, result in zip((index, single), results, strict=True):
            shown = tools.skopeo.inspect(f"docker://{ref}")
            assert shown["Digest"] == result["digest"]
            assert shown["Labels"]["org.example.mutated"] == "yes" and "GREETING=hi" in shown["Env"]
            assert tools.skopeo.inspect_raw(f"docker://{ref}") == client.get_manifest(ref).raw
            tools.podman.run("pull", "-q", "--tls-verify=false", "--arch", "amd64", str(ref))
            container = tools.buildah.out("from", "--pull-never", str(ref)).strip()
            info = json.loads(tools.buildah.out("inspect", container))
            config = info["OCIv1"]["config"]
            assert config["Labels"]["org.example.mutated"] == "yes"
            assert "GREETING=hi" in config["Env"] and config["Cmd"] == ["/bin/true"]
            assert config["WorkingDir"] == "/work"
            tools.buildah.run("rm", container)
    finally:
        tools.close()
