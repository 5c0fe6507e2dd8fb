"""Copies between oci: layouts and docker-archives with no registry between, read back by skopeo."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from cargohold.cli.main import program
from cargohold.client import DigestMismatch, OCILayout
from cargohold.client.local import LocalArchive, LocalLayout, copy_local
from cargohold.digest import Digest
from cargohold.formats import MediaType, Platform
from tests.support.requirements import requires_tool

from .cli_support import isolated  # noqa: F401 - isolated is an autouse fixture
from .conftest import RunningRegistry
from .images import BuiltImage, build_image, multiarch, write_layout
from .test_cli_transfer import run_in_terminal


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``cargohold ARGV`` as installed (a bug would end it with code 70, not a traceback)."""
    code = program(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error(code: int, err: str, *words: str) -> None:
    """A failure reported as one line on stderr, naming what went wrong."""
    assert code == 1, err
    assert err.count("\n") == 1 and err.startswith("cargohold: error: ") and "Traceback" not in err, err
    for word in words:
        assert word in err, err


def layer_digests(image: BuiltImage) -> list[Digest]:
    return [Digest.parse(layer["digest"]) for layer in json.loads(image.manifest)["layers"]]


def config_of(image: BuiltImage) -> bytes:
    return image.blobs[Digest.parse(json.loads(image.manifest)["config"]["digest"])]


def archive_members(path: Path) -> tuple[list[dict[str, object]], dict[str, bytes]]:
    with tarfile.open(path) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    return json.loads(files["manifest.json"]), files


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_oci_to_docker_archive_to_oci_is_digest_identical(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = build_image((3000, 200_000))  # OCI manifest, gzip layers
    write_layout(tmp_path / "src", image, "v1")
    tar = tmp_path / "app.tar"
    src = f"oci:{tmp_path / 'src'}:v1"
    code, out, err = cli(capsys, "copy", "--json", src, f"docker-archive:{tar}:example.com/app:v1")
    assert code == 0, err
    assert json.loads(out) == {
        "source": f"oci:{tmp_path / 'src'}:v1",
        "destination": f"docker-archive:{tar}:example.com/app:v1",
        "digest": str(image.digest),
        "mediaType": MediaType.OCI_MANIFEST,
        "manifests": 1,
        "blobsTransferred": 3,
        "blobsSkipped": 0,
        "blobsMounted": 0,
    }
    # what archive.save writes: the config under its digest, each layer's bytes as they are, the RepoTag
    manifest, files = archive_members(tar)
    config_digest = Digest.of(config_of(image))
    assert manifest == [
        {
            "Config": f"{config_digest.hex}.json",
            "RepoTags": ["example.com/app:v1"],
            "Layers": [f"{d.hex}.tar" for d in layer_digests(image)],
        }
    ]
    assert files[f"{config_digest.hex}.json"] == config_of(image)
    for digest in layer_digests(image):
        assert files[f"{digest.hex}.tar"] == image.blobs[digest]
    assert json.loads(files["repositories"]) == {"example.com/app": {"v1": layer_digests(image)[-1].hex}}
    assert leftovers(tmp_path) == ["app.tar", "src"]

    code, out, err = cli(capsys, "copy", f"docker-archive:{tar}", f"oci:{tmp_path / 'back'}:v2")
    assert code == 0, err
    assert out.startswith(f"copied docker-archive:{tar} -> oci:{tmp_path / 'back'}:v2: {image.digest} (3 blobs")
    back = OCILayout(tmp_path / "back")
    entry = back.resolve("v2")
    assert entry.digest == image.digest and entry.media_type == MediaType.OCI_MANIFEST
    assert back.read_blob(image.digest) == image.manifest
    for digest, data in image.blobs.items():
        assert back.blob_path(digest).read_bytes() == data
    # with no :TAG, the copy keeps the source's name
    assert cli(capsys, "copy", f"oci:{tmp_path / 'back'}", f"oci:{tmp_path / 'again'}")[0] == 0
    assert OCILayout(tmp_path / "again").resolve("v2").digest == image.digest
    # within one layout: a new name for the same image, nothing copied
    code, out, err = cli(capsys, "copy", "--json", f"oci:{tmp_path / 'again'}:v2", f"oci:{tmp_path / 'again'}:v3")
    assert code == 0 and json.loads(out)["blobsTransferred"] == 0, err
    assert OCILayout(tmp_path / "again").tags() == ["v2", "v3"]


def test_docker_manifest_round_trip_keeps_config_and_layer_bytes(tmp_path: Path) -> None:
    """An OCI layout holds OCI manifests (skopeo reads no other kind there): a Docker image comes back
    as OCI, with the very same config and layer blobs."""
    image = build_image((4000, 50_000), docker=True)
    write_layout(tmp_path / "src", image, "d")
    result = copy_local(LocalLayout(tmp_path / "src", "d"), LocalArchive(tmp_path / "d.tar", "docker.io/x/d:1"))
    assert result.digest == image.digest and result.media_type == MediaType.DOCKER_MANIFEST
    # archive -> archive keeps every member's bytes and, with no name given, the RepoTags
    copy_local(LocalArchive(tmp_path / "d.tar"), LocalArchive(tmp_path / "d2.tar"))
    first, first_files = archive_members(tmp_path / "d.tar")
    second, second_files = archive_members(tmp_path / "d2.tar")
    assert first == second and first_files == second_files
    back = copy_local(LocalArchive(tmp_path / "d2.tar", "docker.io/x/d:1"), LocalLayout(tmp_path / "back"))
    assert back.media_type == MediaType.OCI_MANIFEST
    layout = OCILayout(tmp_path / "back")
    assert layout.resolve("1").digest == back.digest  # the archive name's tag names it
    manifest = json.loads(layout.read_blob(back.digest))
    assert manifest["config"]["digest"] == str(Digest.of(config_of(image)))
    assert manifest["config"]["mediaType"] == MediaType.OCI_CONFIG
    assert [layer["digest"] for layer in manifest["layers"]] == [str(d) for d in layer_digests(image)]
    assert {layer["mediaType"] for layer in manifest["layers"]} == {MediaType.OCI_LAYER_GZIP}
    for digest, data in image.blobs.items():
        assert layout.blob_path(digest).read_bytes() == data


def test_platforms(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = multiarch()
    write_layout(tmp_path / "src", index, "m")
    src = f"oci:{tmp_path / 'src'}:m"
    # oci -> oci: the whole index, as a push from a layout; --platform picks one image
    assert cli(capsys, "copy", src, f"oci:{tmp_path / 'all'}:m")[0] == 0
    assert OCILayout(tmp_path / "all").read_blob(index.digest) == index.manifest
    code, out, err = cli(capsys, "copy", "--json", "--platform", "linux/arm64", src, f"oci:{tmp_path / 'arm'}:m")
    assert code == 0, err
    arm = next(m for m in json.loads(index.manifest)["manifests"] if m["platform"]["architecture"] == "arm64")
    assert json.loads(out)["digest"] == arm["digest"]
    assert OCILayout(tmp_path / "arm").resolve("m").digest == Digest.parse(arm["digest"])
    # oci -> docker-archive: one image, the one asked for
    archive = f"docker-archive:{tmp_path / 'a.tar'}"
    code, out, err = cli(capsys, "copy", "--json", "--platform", "linux/arm64", src, archive)
    assert code == 0, err
    assert json.loads(out)["digest"] == arm["digest"]
    manifest, files = archive_members(tmp_path / "a.tar")
    assert manifest[0]["RepoTags"] == []  # no name given, none invented (as skopeo)
    assert json.loads(files[str(manifest[0]["Config"])])["architecture"] == "arm64"
    # an archive holds single images: --all-platforms is refused before anything is written
    code, _, err = cli(capsys, "copy", "--all-platforms", src, f"docker-archive:{tmp_path / 'b.tar'}")
    one_error(code, err, "--all-platforms")
    code, _, err = cli(capsys, "copy", "--platform", "linux/s390x", src, f"docker-archive:{tmp_path / 'b.tar'}")
    one_error(code, err, "linux/s390x", "arm64")
    # a single image must be for the platform asked for, from an archive too
    code, _, err = cli(capsys, "copy", "--platform", "linux/amd64", archive, f"oci:{tmp_path / 'c'}")
    one_error(code, err, "linux/arm64", "not linux/amd64")
    assert leftovers(tmp_path) == ["a.tar", "all", "arm", "src"]
    arm_only = copy_local(
        LocalArchive(tmp_path / "a.tar"), LocalLayout(tmp_path / "c"), platform=Platform("arm64", "linux")
    )
    assert arm_only.digest == Digest.parse(arm["digest"])  # OCI manifest, gzip layers: the same digest


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    image = build_image((300_000,))
    write_layout(tmp_path / "src", image, "v1")
    code, drawn = run_in_terminal(["copy", f"oci:{tmp_path / 'src'}:v1", f"docker-archive:{tmp_path / 'a.tar'}"])
    assert code == 0, drawn
    assert "copying [" + "#" * 30 + "]" in drawn.decode(errors="replace")


def test_layers_stream_through_every_copy(tmp_path: Path) -> None:
    """No layer is held whole in memory: a 48 MiB layer goes oci -> archive -> archive -> oci -> oci in
    1 MiB chunks (Python's allocations peak far below the layer's size)."""
    data = os.urandom(48 * 1024 * 1024)  # an uncompressed layer: stored as it is, OCI manifest both ways
    layer = Digest.of(data)
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [str(layer)]}}
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MediaType.OCI_MANIFEST,
            "config": {"mediaType": MediaType.OCI_CONFIG, "digest": str(Digest.of(config)), "size": len(config)},
            "layers": [{"mediaType": MediaType.OCI_LAYER, "digest": str(layer), "size": len(data)}],
        },
        indent=3,
    ).encode()
    image = BuiltImage(manifest, Digest.of(manifest), MediaType.OCI_MANIFEST, {layer: data, Digest.of(config): config})
    write_layout(tmp_path / "src", image, "big")
    del data, image
    tracemalloc.start()
    try:
        copy_local(LocalLayout(tmp_path / "src", "big"), LocalArchive(tmp_path / "a.tar", "big:1"))
        copy_local(LocalArchive(tmp_path / "a.tar"), LocalArchive(tmp_path / "b.tar"))
        result = copy_local(LocalArchive(tmp_path / "b.tar"), LocalLayout(tmp_path / "back"))
        copy_local(LocalLayout(tmp_path / "back"), LocalLayout(tmp_path / "again"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, peak
    assert result.digest == Digest.of(manifest)
    assert OCILayout(tmp_path / "again").resolve(None).digest == Digest.of(manifest)  # no name given, none taken
    assert Digest.of(OCILayout(tmp_path / "again").blob_path(layer).read_bytes()) == layer


def corrupt(path: Path) -> None:
    """Flip one byte in the middle: same size, another digest."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_corrupted_blob_in_a_layout_leaves_nothing_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = build_image((1000, 300_000))
    layout = write_layout(tmp_path / "src", image, "v1")
    corrupt(layout.blob_path(layer_digests(image)[1]))
    src = f"oci:{tmp_path / 'src'}:v1"
    for dst in (f"docker-archive:{tmp_path / 'out.tar'}", f"oci:{tmp_path / 'out'}:v1", f"oci:{tmp_path / 'a/b/c'}"):
        code, out, err = cli(capsys, "copy", "--json", src, dst)
        one_error(code, err, "digest mismatch", str(layer_digests(image)[1]))
        assert out == ""
        assert leftovers(tmp_path) == ["src"]  # no archive, no temporary file, no half layout
    (tmp_path / "empty").mkdir()
    code, _, err = cli(capsys, "copy", src, f"oci:{tmp_path / 'empty'}")
    one_error(code, err, "digest mismatch")
    assert leftovers(tmp_path / "empty") == []  # an empty directory given stays, empty
    # into an existing layout: its index is untouched, no tag points at the broken image
    other = build_image((500,))
    write_layout(tmp_path / "out", other, "keep")
    before = (tmp_path / "out" / "index.json").read_bytes()
    with pytest.raises(DigestMismatch):
        copy_local(LocalLayout(tmp_path / "src", "v1"), LocalLayout(tmp_path / "out", "v1"))
    assert (tmp_path / "out" / "index.json").read_bytes() == before
    assert not list((tmp_path / "out").rglob(".*tmp"))


def test_a_corrupted_docker_archive_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = build_image((1000, 300_000), docker=True)
    write_layout(tmp_path / "src", image, "v1")
    copy_local(LocalLayout(tmp_path / "src", "v1"), LocalArchive(tmp_path / "good.tar"))
    damaged = tmp_path / "bad.tar"
    victim = f"{layer_digests(image)[1].hex}.tar"
    with tarfile.open(tmp_path / "good.tar") as good, tarfile.open(damaged, "w") as bad:
        for member in good.getmembers():
            data = bytearray(good.extractfile(member).read())  # type: ignore[union-attr]
            if member.name == victim:
                data[len(data) // 2] ^= 0xFF
            bad.addfile(member, io.BytesIO(bytes(data)))
    for dst in (f"oci:{tmp_path / 'out'}", f"docker-archive:{tmp_path / 'out.tar'}"):
        code, _, err = cli(capsys, "copy", f"docker-archive:{damaged}", dst)
        one_error(code, err, "digest mismatch", victim)
        assert leftovers(tmp_path) == ["bad.tar", "good.tar", "src"]


@pytest.mark.parametrize(
    ("source", "destination", "words"),
    [
        ("oci:{t}/nowhere:v1", "docker-archive:{t}/x.tar", ["nowhere", "no such directory"]),
        ("oci:{t}/plain:v1", "docker-archive:{t}/x.tar", ["plain", "not an OCI image layout"]),
        ("oci:{t}/src:v9", "docker-archive:{t}/x.tar", ["no image named 'v9'", "have: v1"]),
        ("oci:{t}/src:v1", "oci:{t}/plain:v1", ["plain", "not empty and not an OCI image layout"]),
        ("oci:{t}/src:v1", "docker-archive:{t}/plain", ["plain", "is a directory"]),
        ("oci:{t}/src:v1", "docker-archive:{t}/nowhere/x.tar", ["nowhere: no such directory"]),
        ("oci:{t}/src:v1", "docker-archive:{t}/x.tar:app@sha256:" + "0" * 64, ["by tag, not digest"]),
        ("oci:{t}/src:v1", "docker-archive:{t}/x.tar:Not/Valid:tag", ["Not/Valid"]),
        ("docker-archive:{t}/none.tar", "oci:{t}/o", ["none.tar", "no such file"]),
        ("docker-archive:{t}/text.tar", "oci:{t}/o", ["text.tar", "not a readable tar"]),
        ("docker-archive:{t}/odd.tar", "oci:{t}/o", ["odd.tar", "not a docker-archive manifest"]),
        ("docker-archive:{t}/src.tar:other:tag", "oci:{t}/o", ["no image tagged 'other:tag'"]),
    ],
)
def test_bad_local_locations_give_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str, destination: str, words: list[str]
) -> None:
    write_layout(tmp_path / "src", build_image((100,)), "v1")
    copy_local(LocalLayout(tmp_path / "src", "v1"), LocalArchive(tmp_path / "src.tar", "app:v1"))
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("not a layout")
    (tmp_path / "text.tar").write_text("hello")
    with tarfile.open(tmp_path / "odd.tar", "w") as odd:
        info = tarfile.TarInfo("manifest.json")
        info.size = 2
        odd.addfile(info, io.BytesIO(b"{}"))
    before = leftovers(tmp_path)
    code, out, err = cli(capsys, "copy", source.format(t=tmp_path), destination.format(t=tmp_path))
    one_error(code, err, *words)
    assert out == "" and leftovers(tmp_path) == before


@requires_tool("skopeo")
def test_skopeo_reads_what_we_write_and_we_read_what_it_writes(
    registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = build_image((2000, 120_000))
    write_layout(tmp_path / "src", image, "v1")
    tar = tmp_path / "app.tar"
    assert cli(capsys, "copy", f"oci:{tmp_path / 'src'}:v1", f"docker-archive:{tar}:localhost/app:v1")[0] == 0
    assert cli(capsys, "copy", f"docker-archive:{tar}", f"oci:{tmp_path / 'back'}:v1")[0] == 0

    def skopeo(*argv: str) -> str:
        done = subprocess.run(["skopeo", *argv], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    config = json.loads(config_of(image))
    seen = json.loads(skopeo("inspect", f"docker-archive:{tar}"))
    assert seen["Labels"] == config["config"]["Labels"] and seen["Architecture"] == "amd64"
    assert len(seen["Layers"]) == 2
    seen = json.loads(skopeo("inspect", f"oci:{tmp_path / 'back'}:v1"))
    assert seen["Digest"] == str(image.digest)
    assert seen["Layers"] == [str(d) for d in layer_digests(image)]
    assert json.loads(skopeo("inspect", "--config", f"oci:{tmp_path / 'back'}:v1")) == config
    # skopeo copies both into a registry, verifying every blob on the way
    repo = registry.repo("local")
    for name, source in (("archive", f"docker-archive:{tar}"), ("layout", f"oci:{tmp_path / 'back'}:v1")):
        skopeo("copy", "--dest-tls-verify=false", source, f"docker://{registry.ref(repo, name)}")
        pushed = json.loads(skopeo("inspect", "--tls-verify=false", "--config", f"docker://{registry.ref(repo, name)}"))
        assert pushed["rootfs"] == config["rootfs"] and pushed["config"] == config["config"]
    # the other way: skopeo's archive (uncompressed layers named by their digest) into our layout and back
    theirs = tmp_path / "theirs.tar"
    skopeo("copy", f"oci:{tmp_path / 'back'}:v1", f"docker-archive:{theirs}:localhost/theirs:v1")
    assert cli(capsys, "copy", f"docker-archive:{theirs}:localhost/theirs:v1", f"oci:{tmp_path / 'ours'}")[0] == 0
    seen = json.loads(skopeo("inspect", f"oci:{tmp_path / 'ours'}:v1"))
    assert seen["Layers"] == config["rootfs"]["diff_ids"]  # the same layers, stored uncompressed
    assert json.loads(skopeo("inspect", "--config", f"oci:{tmp_path / 'ours'}:v1"))["rootfs"] == config["rootfs"]
