"""Layer blobs as tar streams, and layers applied in order into one filesystem tar (whiteouts, refusals)."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import tracemalloc
from collections.abc import Iterable
from pathlib import Path

import pytest
import zstandard

from cargohold.client import ClientError
from cargohold.client.apply import Layer, UnsafeLayer, apply_layers
from cargohold.client.layers import INFLATE_STEP, check_tar, decompressed
from cargohold.digest import Digest

from .layer_tars import Entry, Found, directory, file, hardlink, opaque, read_tree, symlink, tar_bytes, whiteout


def layers_of(*blobs: bytes) -> list[Layer]:
    """Each blob served in 1000-byte chunks, as a registry stream would."""

    def source(blob: bytes) -> Iterable[bytes]:
        return (blob[i : i + 1000] for i in range(0, len(blob), 1000))

    return [(f"layer {i + 1}", lambda blob=blob: source(blob)) for i, blob in enumerate(blobs)]


def applied(*blobs: bytes) -> dict[str, Found]:
    out = io.BytesIO()
    apply_layers(layers_of(*blobs), out)
    out.seek(0)
    return read_tree(out)


# decompression


def test_every_compression_gives_the_same_tar(tmp_path: Path) -> None:
    tar = tar_bytes(*(file(f"f{i}", bytes([i]) * 5000) for i in range(20)))
    diff_id = Digest.of(tar)
    half = len(tar) // 2
    zstd = zstandard.ZstdCompressor()
    forms = {
        "layer.tar": ("none", tar),
        "layer.tar.gz": ("gzip", gzip.compress(tar[:half]) + gzip.compress(tar[half:])),  # two members
        "layer.tar.zst": ("zstd", zstd.compress(tar[:half]) + zstd.compress(tar[half:])),  # two frames
    }
    for name, (compression, blob) in forms.items():
        assert b"".join(decompressed([blob[i : i + 7] for i in range(0, len(blob), 7)])) == tar
        (tmp_path / name).write_bytes(blob)
        assert check_tar(tmp_path / name) == (compression, diff_id)


def test_truncated_and_foreign_streams_are_refused(tmp_path: Path) -> None:
    tar = tar_bytes(file("a", "x" * 3000))
    for name, blob, message in (
        ("cut.gz", gzip.compress(tar)[:-12], "gzip stream is truncated"),
        ("cut.zst", zstandard.ZstdCompressor().compress(tar)[:-12], "zstd stream is truncated"),
        ("bad.zst", b"\x28\xb5\x2f\xfd" + b"\xff" * 40, "not valid zstd"),
        ("layer.bz2", b"BZh91AY&SY" + b"\0" * 40, "bzip2"),
        ("notes.txt", b"just some text, not a tar at all\n" * 20, "not a tar"),
        ("empty.tar", b"", "not a tar"),
    ):
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(ClientError, match=message):
            check_tar(tmp_path / name)


def test_decompression_steps_are_bounded() -> None:
    size = 3 * 64 * 1024 * 1024 + 5  # 192 MiB of zeros: kilobytes compressed
    zeros = b"\0" * size
    for blob, bound in (
        (gzip.compress(zeros, compresslevel=9), INFLATE_STEP),
        (zstandard.ZstdCompressor(level=19).compress(zeros), 32 * 1024 * 1024),
    ):
        assert len(blob) < size // 500
        largest = total = 0
        hasher = hashlib.sha256()
        for piece in decompressed([blob]):
            largest, total = max(largest, len(piece)), total + len(piece)
            hasher.update(piece)
        assert total == size and largest <= bound
        assert hasher.hexdigest() == hashlib.sha256(zeros).hexdigest()


# applying layers


def test_later_layers_replace_whiteouts_delete_opaque_directories_hide() -> None:
    base = tar_bytes(
        directory("etc"),
        file("etc/keep", "kept"),
        file("etc/replaced", "old"),
        file("etc/gone", "deleted later"),
        directory("var"),
        directory("var/cache"),
        file("var/cache/a", "a"),
        directory("var/cache/sub"),
        file("var/cache/sub/b", "b"),
        directory("opt"),
        file("opt/old", "hidden by the opaque directory"),
        directory("srv"),
        file("srv/inside", "kept: a directory over a directory keeps its children"),
        file("now-a-dir", "a file, then a directory"),
    )
    top = tar_bytes(
        file("etc/replaced", "new", mode=0o600),
        whiteout("etc/gone"),
        whiteout("var/cache"),
        directory("opt"),
        opaque("opt"),
        file("opt/new", "added beside the opaque marker"),
        directory("srv", mode=0o700),
        directory("now-a-dir"),
        file("now-a-dir/child", "c"),
        whiteout("never-existed"),
    )
    tree = applied(base, top)
    assert set(tree) == {
        "etc",
        "etc/keep",
        "etc/replaced",
        "var",
        "opt",
        "opt/new",
        "srv",
        "srv/inside",
        "now-a-dir",
        "now-a-dir/child",
    }
    assert tree["etc/replaced"] == read_tree(tar_bytes(file("x", "new", mode=0o600)))["x"]
    assert tree["srv"].mode == 0o700
    assert tree["now-a-dir"].kind == "dir"


def test_opaque_marker_after_the_directorys_new_entries_keeps_them() -> None:
    base = tar_bytes(directory("d"), file("d/old", "o"), directory("d/sub"), file("d/sub/old", "o"))
    restated = tar_bytes(directory("d"), directory("d/sub"), file("d/sub/new", "n"), opaque("d"))
    assert set(applied(base, restated)) == {"d", "d/sub", "d/sub/new"}
    # d/sub is not restated: its entry from below is hidden, the new file in it stays, in a directory made for it
    unstated = tar_bytes(file("d/sub/new", "n"), opaque("d"))
    tree = applied(base, unstated)
    assert set(tree) == {"d", "d/sub", "d/sub/new"} and tree["d/sub"].mode == 0o755


def test_directories_come_before_their_contents_with_their_last_header() -> None:
    base = tar_bytes(directory("d", mode=0o755), file("d/f", "f"), directory("e"))
    top = tar_bytes(directory("d", mode=0o700), file("x/y/z", "parents not in the layer"), file("e/g", "g"))
    out = io.BytesIO()
    apply_layers(layers_of(base, top), out)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        entries = [(m.name.rstrip("/"), m.mode) for m in tar.getmembers()]
    names = [name for name, _ in entries]
    assert sorted(names) == ["d", "d/f", "e", "e/g", "x", "x/y", "x/y/z"]
    for parent, child in (("d", "d/f"), ("x", "x/y"), ("x/y", "x/y/z"), ("e", "e/g")):
        assert names.index(parent) < names.index(child)
    assert dict(entries)["d"] == 0o700 and dict(entries)["x"] == dict(entries)["x/y"] == 0o755


def test_a_file_replacing_a_directory_drops_its_children() -> None:
    base = tar_bytes(directory("d"), file("d/child", "c"))
    top = tar_bytes(file("d", "now a file"))
    tree = applied(base, top)
    assert set(tree) == {"d"} and tree["d"].kind == "file"


def test_hard_links_keep_the_content_they_were_made_with() -> None:
    base = tar_bytes(
        file("a", "first"),
        hardlink("a-link", "a"),
        file("b", "second"),
        hardlink("b-link1", "b"),
        hardlink("b-link2", "b-link1"),
        file("c", "third"),
        hardlink("c-link", "c"),
    )
    top = tar_bytes(
        file("a", "a replaced"),  # a-link keeps "first"
        whiteout("b"),  # b-link1 and b-link2 keep "second", one holding it, the other linked
        hardlink("c-late", "c"),  # a link in a later layer to a file of an earlier one
    )
    tree = applied(base, top)
    found = {path: (f.kind, f.data) for path, f in tree.items()}
    assert found["a"] == ("file", b"a replaced")
    assert found["a-link"][1] == b"first"
    assert "b" not in found
    assert {found["b-link1"], found["b-link2"]} == {("file", b"second"), ("link", b"second")}
    assert found["c-link"] == ("link", b"third") and found["c-late"] == ("link", b"third")


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([file("../etc/passwd", "root::0:0::/:/bin/sh\n")], "'..' component"),
        ([file("ok/../../etc/passwd", "x")], "'..' component"),
        ([file("/etc/passwd", "x")], "absolute path"),
        ([symlink("escape", "../../../../etc")], "points outside the root"),
        ([directory("a"), symlink("a/up", "../..")], "points outside the root"),
        ([symlink("etc", "/etc"), file("etc/passwd", "x")], "goes through the symbolic link 'etc'"),
        ([file("a", "x"), hardlink("b", "../a")], "points outside the root"),
        ([hardlink("b", "/etc/shadow")], "points outside the root"),
        ([hardlink("b", "missing")], "no such file"),
    ],
)
def test_entries_that_escape_the_root_are_refused_before_anything_is_written(
    entries: list[Entry], message: str
) -> None:
    good = tar_bytes(directory("usr"), file("usr/ok", "fine"), symlink("bin", "usr/bin"), symlink("abs", "/usr"))
    bad = tar_bytes(*entries)
    out = io.BytesIO()
    with pytest.raises(UnsafeLayer, match=message):
        apply_layers(layers_of(good, bad), out)
    assert out.getvalue() == b""


def test_relative_and_absolute_links_inside_the_root_are_kept() -> None:
    tree = applied(
        tar_bytes(
            directory("usr"),
            directory("usr/lib"),
            symlink("usr/lib/rel", "../../etc/x"),
            symlink("lib", "usr/lib"),
            symlink("abs", "/etc/alternatives/x"),
        )
    )
    assert {p: f.target for p, f in tree.items() if f.kind == "symlink"} == {
        "usr/lib/rel": "../../etc/x",
        "lib": "usr/lib",
        "abs": "/etc/alternatives/x",
    }


class _Counter(io.RawIOBase):
    """An output that only counts what is written to it."""

    def __init__(self) -> None:
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        size = memoryview(data).nbytes  # type: ignore[arg-type]
        self.count += size
        return size


def test_applying_holds_no_file_content_in_memory() -> None:
    size = 96 * 1024 * 1024
    blob = gzip.compress(tar_bytes(file("big", b"\0" * size), file("small", "s")), compresslevel=1)
    out = _Counter()
    tracemalloc.start()
    try:
        apply_layers(layers_of(blob, tar_bytes(file("after", "a"))), out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.count > size
    assert peak < 16 * 1024 * 1024, f"peak {peak} bytes while applying a {size}-byte file"
