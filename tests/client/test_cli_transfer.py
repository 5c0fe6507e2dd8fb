"""CLI transfers: progress bars on a terminal only, sync output, blob get/put, multi-image docker-archives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from cargohold.cli.main import main
from cargohold.client import OCILayout, Reference, RegistryClient
from cargohold.client.archive import load
from cargohold.digest import Digest
from tests.support.requirements import require_tool

from .cli_support import isolated, run  # noqa: F401 - isolated is an autouse fixture
from .conftest import ROOT, RunningRegistry
from .images import build_image, layer_bytes, write_layout


def cli_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TERM": "xterm", "COLUMNS": "120"}


def run_in_terminal(argv: list[str]) -> tuple[int, bytes]:
    """Run the CLI with stdin, stdout and stderr on a pseudo-terminal; returns (exit code, what it drew)."""
    master, slave = os.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "cargohold.cli.main", *argv],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=cli_env(),
        close_fds=True,
    )
    os.close(slave)
    drawn = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child's side of the terminal closed
            break
        if not data:
            break
        drawn += data
    os.close(master)
    return process.wait(60), drawn


def test_progress_bar_only_on_a_terminal(registry: RunningRegistry, tmp_path: Path) -> None:
    image = build_image((400_000, 300_000))
    write_layout(tmp_path / "src", image, "v1")
    ref = registry.ref(registry.repo("progress"), "v1")
    code, drawn = run_in_terminal(["push", f"oci:{tmp_path / 'src'}:v1", ref])
    assert code == 0, drawn
    text = drawn.decode(errors="replace")
    assert "\r" in text and "copying [" + "#" * 30 + "]" in text  # the final state: a full bar
    assert "pushed oci:" in text and str(image.digest) in text
    # not a terminal: the same command draws nothing
    piped = subprocess.run(
        [sys.executable, "-m", "cargohold.cli.main", "pull", ref, f"oci:{tmp_path / 'dst'}:v1"],
        capture_output=True,
        env=cli_env(),
        check=True,
    )
    assert b"\r" not in piped.stderr and b"[#" not in piped.stderr and piped.stderr == b""
    assert b"pulled" in piped.stdout
    # a terminal, but --json: no bar either, the output stays parseable
    code, drawn = run_in_terminal(["pull", "--json", ref, f"oci:{tmp_path / 'dst2'}:v1"])
    assert code == 0 and b"[#" not in drawn
    assert json.loads(drawn.decode().replace("\r\n", "\n"))["digest"] == str(image.digest)


def test_sync_output_and_json(
    registry: RunningRegistry,
    distribution: RunningRegistry,
    client: RegistryClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = registry.ref(registry.repo("sync")).rpartition(":")[0]
    images = {}
    for tag in ("1.0", "1.1", "dev"):
        images[tag] = build_image((100 + len(images),))
        write_layout(tmp_path / tag, images[tag], tag)
        assert run(capsys, "push", f"oci:{tmp_path / tag}:{tag}", f"{src}:{tag}")[0] == 0
    dst = distribution.ref(distribution.repo("synced")).rpartition(":")[0]
    code, out, err = run(capsys, "sync", src, dst, "--tags", r"1\..*")
    assert code == 0 and err == ""
    assert sorted(out.splitlines()) == [f"copied {t}: {images[t].digest}" for t in ("1.0", "1.1")]
    code, out, _ = run(capsys, "sync", src, dst, "--json")
    assert code == 0
    assert json.loads(out) == {"copied": {"dev": str(images["dev"].digest)}, "skipped": ["1.0", "1.1"], "failed": {}}
    code, out, _ = run(capsys, "sync", src, dst)
    assert code == 0 and sorted(out.splitlines()) == ["up to date 1.0", "up to date 1.1", "up to date dev"]
    # a tag whose layer is gone from the source fails alone: reported, exit code 1, the others still copied
    layer = json.loads(images["dev"].manifest)["layers"][0]["digest"]
    client.delete_blob(Reference.parse(f"{src}:dev"), Digest.parse(layer))
    other = distribution.ref(distribution.repo("synced2")).rpartition(":")[0]
    code, out, err = run(capsys, "sync", src, other, "--json")
    assert code == 1
    result = json.loads(out)
    assert sorted(result["copied"]) == ["1.0", "1.1"] and list(result["failed"]) == ["dev"]
    assert "BLOB_UNKNOWN" in result["failed"]["dev"]


def test_blob_put_and_get(
    registry: RunningRegistry, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    repo = registry.ref(registry.repo("blob")).rpartition(":")[0]
    data = os.urandom(300_000)
    (tmp_path / "in.bin").write_bytes(data)
    digest = Digest.of(data)
    assert main(["blob", "put", repo, str(tmp_path / "in.bin")]) == 0
    assert capsysbinary.readouterr().out.decode().strip() == str(digest)
    assert main(["blob", "put", "--json", repo, str(tmp_path / "in.bin")]) == 0  # already there: no upload
    assert json.loads(capsysbinary.readouterr().out) == {"digest": str(digest), "size": len(data)}
    assert main(["blob", "get", repo, str(digest), "-o", str(tmp_path / "out.bin")]) == 0
    assert (tmp_path / "out.bin").read_bytes() == data
    assert not list(tmp_path.glob(".out.bin*"))
    assert main(["blob", "get", repo, str(digest)]) == 0
    assert capsysbinary.readouterr().out == data
    assert main(["blob", "get", f"{repo}@{digest}"]) == 0  # crane's form
    assert capsysbinary.readouterr().out == data
    assert main(["blob", "get", f"{repo}@{digest}", "-o", str(tmp_path / "crane.bin")]) == 0
    assert (tmp_path / "crane.bin").read_bytes() == data
    for twice_or_never in ([f"{repo}@{digest}", str(digest)], [repo]):
        assert main(["blob", "get", *twice_or_never]) == 1
        assert "name the blob once" in capsysbinary.readouterr().err.decode()
    missing = Digest.of(b"not there")
    assert main(["blob", "get", repo, str(missing), "-o", str(tmp_path / "none.bin")]) == 1
    err = capsysbinary.readouterr().err.decode()
    assert "BLOB_UNKNOWN" in err and err.count("\n") == 1
    assert not (tmp_path / "none.bin").exists()


def test_several_images_in_one_docker_archive(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shared = layer_bytes(5000, "shared.bin")
    first = build_image((1000,), docker=True, base=[shared], labels={"image": "first"})
    second = build_image((2000,), docker=True, base=[shared], labels={"image": "second"})
    repo = registry.ref(registry.repo("save")).rpartition(":")[0]
    for name, image in (("first", first), ("second", second)):
        write_layout(tmp_path / name, image, name)
        assert run(capsys, "push", f"oci:{tmp_path / name}:{name}", f"{repo}:{name}")[0] == 0
    assert run(capsys, "tag", f"{repo}:first", "again")[0] == 0
    tar = tmp_path / "images.tar"
    code, out, err = run(
        capsys, "pull", "--json", f"{repo}:first", f"{repo}:second", f"{repo}:again", f"docker-archive:{tar}"
    )
    assert code == 0, err
    assert [r["digest"] for r in json.loads(out)] == [str(first.digest), str(second.digest), str(first.digest)]
    with tarfile.open(tar) as archive:
        names = archive.getnames()
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        repositories = json.load(archive.extractfile("repositories"))  # type: ignore[arg-type]
    # docker save's layout: one entry per image with all its tags, each layer stored once
    assert [entry["RepoTags"] for entry in manifest] == [[f"{repo}:first", f"{repo}:again"], [f"{repo}:second"]]
    shared_name = f"{Digest.of(shared[0]).hex}.tar"
    assert [entry["Layers"][0] for entry in manifest] == [shared_name, shared_name]
    assert names.count(shared_name) == 1 and len(names) == 2 + 3 + 2  # configs, layers, two metadata files
    assert repositories == {
        repo: {
            "first": manifest[0]["Layers"][-1][:-4],
            "again": manifest[0]["Layers"][-1][:-4],
            "second": manifest[1]["Layers"][-1][:-4],
        }
    }
    # each image reads back from the archive byte-identical (Docker schema 2, gzip layers)
    for tag, image in (("again", first), ("second", second)):
        assert load(tar, f"{repo}:{tag}").manifest == image.manifest
        back = registry.ref(registry.repo("loaded"), tag)
        code, out, _ = run(capsys, "push", "--json", f"docker-archive:{tar}:{repo}:{tag}", back)
        assert code == 0 and json.loads(out)["digest"] == str(image.digest)
    code, _, err = run(capsys, "pull", f"{repo}:first", f"{repo}:second", f"oci:{tmp_path / 'nope'}")
    assert code == 1 and "docker-archive" in err
    require_tool("skopeo")  # another docker-archive reader picks each image out
    for index, image in enumerate((first, second)):
        subprocess.run(
            ["skopeo", "copy", f"docker-archive:{tar}:@{index}", f"oci:{tmp_path / 'skopeo'}:{index}"],
            check=True,
            capture_output=True,
        )
        layout = OCILayout(tmp_path / "skopeo")
        config_digest = json.loads(layout.read_blob(layout.resolve(str(index)).digest))["config"]["digest"]
        config = json.loads(layout.read_blob(Digest.parse(config_digest)))  # re-serialized for OCI
        original = json.loads(next(b for b in image.blobs.values() if b.startswith(b"{")))
        assert config["config"]["Labels"] == original["config"]["Labels"]
        assert config["rootfs"] == original["rootfs"]


def test_a_closed_pipe_ends_a_client_command_quietly(registry: RunningRegistry, tmp_path: Path) -> None:
    """``cargohold blob get ... | head -c0``: exit 141 and nothing on stderr, as a command killed by SIGPIPE."""
    repo = registry.ref(registry.repo("pipe")).rpartition(":")[0]
    data = os.urandom(300_000)  # more than a pipe holds
    (tmp_path / "in.bin").write_bytes(data)
    assert main(["blob", "put", repo, str(tmp_path / "in.bin")]) == 0
    for argv in (["blob", "get", f"{repo}@{Digest.of(data)}"], ["catalog", "--json", registry.host]):
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            result = subprocess.run(
                [sys.executable, "-m", "cargohold.cli.main", *argv],
                stdout=write_end, stderr=subprocess.PIPE, env=cli_env(), timeout=60, check=False,
            )
        finally:
            os.close(write_end)
        assert (result.returncode, result.stderr) == (141, b""), argv
