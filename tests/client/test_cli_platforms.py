"""--platform and --all-platforms for every kind of source: OCI layout, docker-archive, registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cargohold.client import Reference, RegistryClient
from cargohold.digest import Digest
from cargohold.formats import Platform

from .cli_support import isolated, run  # noqa: F401 - isolated is an autouse fixture
from .conftest import RunningRegistry
from .images import BuiltImage, build_image, build_index, write_layout

AMD64, ARM64 = Platform("amd64", "linux"), Platform("arm64", "linux", "v8")


def two_platforms() -> tuple[BuiltImage, BuiltImage, BuiltImage]:
    amd64 = build_image((1000,), architecture="amd64")
    arm64 = build_image((1200,), architecture="arm64", variant="v8")
    return build_index({AMD64: amd64, ARM64: arm64}), amd64, arm64


def layers(image: BuiltImage) -> list[Digest]:
    return [Digest.parse(layer["digest"]) for layer in json.loads(image.manifest)["layers"]]


def pushed(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    digest: str = json.loads(out)["digest"]
    return digest


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 1 and out == "" and err.count("\n") == 1, err
    return err


def test_push_from_a_layout(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index, amd64, arm64 = two_platforms()
    source = f"oci:{tmp_path / 'multi'}:1.0"
    write_layout(tmp_path / "multi", index, "1.0")
    one = registry.ref(registry.repo("platform"), "1.0")
    assert pushed(capsys, "push", "--platform", "linux/arm64", source, one) == str(arm64.digest)
    ref = Reference.parse(one)
    assert client.get_manifest(ref).raw == arm64.manifest  # that image's manifest alone, under the tag
    assert client.blob_size(ref, layers(arm64)[0]) is not None
    assert client.blob_size(ref, layers(amd64)[0]) is None  # nothing of the other platform
    # copy from a layout is the same transfer
    copied = registry.ref(registry.repo("platform"), "1.0")
    assert pushed(capsys, "copy", "--platform", "linux/amd64", source, copied) == str(amd64.digest)
    # the whole index: by default, or asked for
    for flags in ([], ["--all-platforms"]):
        assert pushed(capsys, "push", *flags, source, registry.ref(registry.repo("platform"))) == str(index.digest)
    assert "no image for platform linux/s390x" in refused(capsys, "push", "--platform", "linux/s390x", source, one)
    assert "exclude each other" in refused(
        capsys, "push", "--platform", "linux/arm64", "--all-platforms", source, one
    )
    # a single image must be for the platform asked for
    write_layout(tmp_path / "single", amd64, "1.0")
    err = refused(capsys, "push", "--platform", "linux/arm64", f"oci:{tmp_path / 'single'}:1.0", one)
    assert "is an image for linux/amd64, not linux/arm64" in err
    assert client.get_manifest(ref).raw == arm64.manifest  # untouched by the refusals


def test_docker_archive_and_registry_sources(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index, amd64, arm64 = two_platforms()
    write_layout(tmp_path / "multi", index, "1.0")
    multi = registry.ref(registry.repo("platform"), "multi")
    pushed(capsys, "push", f"oci:{tmp_path / 'multi'}:1.0", multi)
    # registry -> registry: one platform of the index, or refused for a single image of another
    one = registry.ref(registry.repo("platform"), "one")
    assert pushed(capsys, "copy", "--platform", "linux/arm64", multi, one) == str(arm64.digest)
    assert "is an image for linux/arm64/v8, not linux/amd64" in refused(
        capsys, "copy", "--platform", "linux/amd64", one, registry.ref(registry.repo("platform"))
    )
    # registry -> docker-archive: one image per reference, so --all-platforms is refused
    tar = tmp_path / "arm64.tar"
    assert "--all-platforms" in refused(capsys, "pull", "--all-platforms", multi, f"docker-archive:{tar}")
    assert not tar.exists()
    assert pushed(capsys, "pull", "--platform", "linux/arm64", multi, f"docker-archive:{tar}") == str(arm64.digest)
    # docker-archive -> registry: the archive's image must be for the platform asked for
    back = registry.ref(registry.repo("platform"), "back")
    err = refused(capsys, "push", "--platform", "linux/amd64", f"docker-archive:{tar}", back)
    assert "is an image for linux/arm64/v8, not linux/amd64" in err
    assert pushed(capsys, "push", "--platform", "linux/arm64", f"docker-archive:{tar}", back)
    # registry -> oci: one platform, or the whole index
    assert pushed(capsys, "pull", "--platform", "linux/amd64", multi, f"oci:{tmp_path / 'out'}:a") == str(amd64.digest)
    assert pushed(capsys, "pull", "--all-platforms", multi, f"oci:{tmp_path / 'out'}:all") == str(index.digest)
