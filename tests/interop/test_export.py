"""``export`` gives the file tree umoci unpacks from the same image: a real Debian image, an image
buildah built with real whiteouts (plus an opaque directory appended), and crafted layers that try to
leave the root, which are refused."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.cli.main import main
from cargohold.client import OCILayout, Reference, RegistryClient, StaticKeychain, push
from cargohold.client.append import append
from cargohold.client.cache import BlobCache
from cargohold.client.keychain import Credentials
from tests.client.layer_tars import BASE, TOP, directory, file, opaque, push_image, symlink, tar_bytes
from tests.support.requirements import require_tool
from tests.support.servers import CargoholdServer

from .tools import BuiltImages, Clients, OciLayout, requires_buildah, requires_skopeo

#: (kind, permission bits, uid, gid, content sha256 or link target)
Tree = dict[str, tuple[str, int, int, int, str]]


def _sha256(handle: object) -> str:
    hasher = hashlib.sha256()
    while block := handle.read(1 << 20):  # type: ignore[attr-defined]
        hasher.update(block)
    return hasher.hexdigest()


def tar_tree(path: Path) -> Tree:
    """What a tar holds, streamed: hard links take their target's content, as on disk."""
    tree: Tree = {}
    with tarfile.open(path, "r|") as tar:
        for member in tar:
            name = member.name.removeprefix("./").rstrip("/")
            if not name or name == ".":
                continue
            assert name not in tree, f"{name} is written twice"
            bits = member.mode & 0o7777
            if member.isdir():
                tree[name] = ("dir", bits, member.uid, member.gid, "")
            elif member.issym():
                tree[name] = ("symlink", 0, member.uid, member.gid, member.linkname)
            elif member.islnk():
                target = tree[member.linkname.removeprefix("./")]
                tree[name] = target
            elif member.isreg():
                tree[name] = ("file", bits, member.uid, member.gid, _sha256(tar.extractfile(member)))
            else:
                tree[name] = ("other", bits, member.uid, member.gid, f"{member.devmajor}:{member.devminor}")
    return tree


def dir_tree(root: Path) -> Tree:
    """The same description of an unpacked root filesystem."""
    tree: Tree = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            key = str(path.relative_to(root))
            bits = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                tree[key] = ("symlink", 0, info.st_uid, info.st_gid, os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                tree[key] = ("dir", bits, info.st_uid, info.st_gid, "")
            elif stat.S_ISREG(info.st_mode):
                with path.open("rb") as handle:
                    tree[key] = ("file", bits, info.st_uid, info.st_gid, _sha256(handle))
            else:
                tree[key] = ("other", bits, info.st_uid, info.st_gid,
                             f"{os.major(info.st_rdev)}:{os.minor(info.st_rdev)}")
    return tree


def umoci_unpack(layout: Path, tag: str, bundle: Path) -> Tree:
    require_tool("umoci")
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:{tag}", str(bundle)], check=True, capture_output=True)
    return dir_tree(bundle / "rootfs")


def assert_same_tree(exported: Tree, unpacked: Tree) -> None:
    missing, extra = sorted(set(unpacked) - set(exported)), sorted(set(exported) - set(unpacked))
    assert not missing and not extra, f"only umoci has {missing[:10]}; only export has {extra[:10]}"
    differ = [path for path in unpacked if unpacked[path] != exported[path]]
    assert not differ, [(p, exported[p], unpacked[p]) for p in differ[:10]]


@pytest.fixture()
def client() -> Iterator[RegistryClient]:
    """An anonymous client: no docker config is read."""
    with RegistryClient(keychain=StaticKeychain(Credentials(), registries=[])) as anonymous:
        yield anonymous


def export_cli(ref: str, out: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(["export", ref, "-o", str(out), "--json", "--cache-dir", str(out.parent / "cache")]) == 0
    result: dict[str, object] = json.loads(capsys.readouterr().out)
    return result


def test_export_of_debian_matches_umoci_unpack(
    debian: OciLayout,
    fresh_registry: CargoholdServer,
    client: RegistryClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ref = f"{fresh_registry.host}/debian/bookworm:12"
    push(client, OCILayout(debian.path), "bookworm", Reference.parse(ref))
    out = tmp_path / "rootfs.tar"
    result = export_cli(ref, out, capsys)
    exported = tar_tree(out)
    assert result["layers"] == 1 and result["entries"] == len(exported)
    unpacked = umoci_unpack(debian.path, "bookworm", tmp_path / "bundle")
    assert len(unpacked) > 5000 and unpacked["usr/bin/bash"][0] == "file" and unpacked["bin"][0] == "symlink"
    assert_same_tree(exported, unpacked)


@requires_buildah
@requires_skopeo
def test_export_of_layers_with_whiteouts_matches_umoci_unpack(
    images: BuiltImages,
    clients: Clients,
    fresh_registry: CargoholdServer,
    client: RegistryClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    buildah = clients.buildah
    container = buildah.out("from", "--pull-never", f"oci:{images.oci.path}:small").strip()
    buildah.run(
        "run", container, "--", "/bin/sh", "-c",
        "rm /hello.txt && rm -r /etc/interop && echo replaced > /built.txt && mkdir -p /data/keep /data/old"
        " && echo a > /data/old/a && echo k > /data/keep/k && ln /built.txt /zz-link",
    )
    buildah.run("commit", "-q", "--format", "oci", container, "localhost/export/step:1")
    container = buildah.out("from", "--pull-never", "localhost/export/step:1").strip()
    buildah.run("run", container, "--", "/bin/sh", "-c", "rm -r /data/old /built.txt && echo newer > /built.txt")
    buildah.run("commit", "-q", "--rm", "--format", "oci", container, "localhost/export/whiteouts:1")
    ref = f"{fresh_registry.host}/export/whiteouts:1"
    buildah.run("push", "-q", "--tls-verify=false", "localhost/export/whiteouts:1", f"docker://{ref}")
    # an opaque directory on top: buildah's vfs diffs list each deleted file instead
    layer = tmp_path / "opaque.tar"
    layer.write_bytes(tar_bytes(directory("data"), opaque("data"), file("data/only", "only this"),
                                symlink("data/bin", "../bin")))
    append(client, Reference.parse(ref), [layer])

    layout = tmp_path / "layout"
    clients.skopeo.copy(f"docker://{ref}", f"oci:{layout}:x")
    names = []
    for descriptor in json.loads(OciLayout(layout).blob(OciLayout(layout).descriptor("x")["digest"]))["layers"]:
        with tarfile.open(OciLayout(layout).blob_path(descriptor["digest"])) as tar:
            names += tar.getnames()
    whiteouts = {Path(n).name for n in names if ".wh." in n}
    assert {".wh.hello.txt", ".wh.interop", ".wh.old", ".wh..wh..opq"} <= whiteouts  # real ones, to apply
    out = tmp_path / "rootfs.tar"
    result = export_cli(ref, out, capsys)
    assert result["layers"] == 5
    exported = tar_tree(out)
    assert not [path for path in exported if ".wh." in path]
    assert "hello.txt" not in exported and "etc/interop" not in exported and "data/keep" not in exported
    assert {path for path in exported if path.startswith("data/")} == {"data/only", "data/bin"}
    assert exported["built.txt"][4] == hashlib.sha256(b"newer\n").hexdigest()
    assert exported["zz-link"][4] == hashlib.sha256(b"replaced\n").hexdigest()
    assert_same_tree(exported, umoci_unpack(layout, "x", tmp_path / "bundle"))


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([file("../etc/passwd", "root::0:0:root:/root:/bin/sh\n")], "'..' component"),
        ([file("/etc/cargohold-export-test", "x")], "absolute path"),
        ([symlink("escape", "../../../../../../tmp"), file("escape/cargohold-export-test", "x")],
         "points outside the root"),
    ],
)
def test_layers_escaping_the_root_are_refused_and_write_nothing(
    entries: list[object],
    message: str,
    fresh_registry: CargoholdServer,
    client: RegistryClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ref = Reference.parse(f"{fresh_registry.host}/export/escape:1")
    push_image(client, ref, [BASE, tar_bytes(*entries)])  # type: ignore[arg-type]
    work = tmp_path / "work"
    work.mkdir()
    passwd = Path("/etc/passwd").read_bytes()
    code = main(["export", str(ref), "-o", str(work / "rootfs.tar"), "--cache-dir", str(tmp_path / "cache")])
    _, err = capsys.readouterr()
    assert code == 1 and err.count("\n") == 1 and message in err
    assert list(work.iterdir()) == []  # no output, not even a partial one
    assert not Path("/etc/cargohold-export-test").exists() and not Path("/tmp/cargohold-export-test").exists()
    assert Path("/etc/passwd").read_bytes() == passwd
    assert not list(tmp_path.rglob("passwd")) and not list(tmp_path.rglob("cargohold-export-test"))


def test_export_to_stdout_is_the_same_tar(
    fresh_registry: CargoholdServer, client: RegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = f"{fresh_registry.host}/export/stdout:1"
    push_image(client, Reference.parse(ref), [BASE, TOP])
    out = tmp_path / "rootfs.tar"
    export_cli(ref, out, capsys)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"),
           "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    piped = subprocess.run(
        [sys.executable, "-m", "cargohold.cli.main", "export", ref, "-o", "-"], env=env, capture_output=True, check=True
    ).stdout
    assert piped == out.read_bytes()
    assert BlobCache(tmp_path / "xdg" / "cargohold").entries()  # the layers went through the cache
