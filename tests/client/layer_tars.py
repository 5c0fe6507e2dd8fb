"""Crafted tar layers, images made of them, and a reader of tar results, for the layer tests."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from dataclasses import dataclass
from typing import IO, Any

from cargohold.client import Reference, RegistryClient, blob_uploads
from cargohold.digest import Digest
from cargohold.formats import MediaType


@dataclass(frozen=True)
class Entry:
    """One tar member: kind is file, dir, symlink, link (hard link) or fifo."""

    kind: str
    name: str
    data: bytes = b""
    target: str = ""
    mode: int = 0o644


def file(name: str, data: bytes | str, mode: int = 0o644) -> Entry:
    return Entry("file", name, data.encode() if isinstance(data, str) else data, mode=mode)


def directory(name: str, mode: int = 0o755) -> Entry:
    return Entry("dir", name, mode=mode)


def symlink(name: str, target: str) -> Entry:
    return Entry("symlink", name, target=target, mode=0o777)


def hardlink(name: str, target: str) -> Entry:
    return Entry("link", name, target=target)


def whiteout(path: str) -> Entry:
    head, _, base = path.rpartition("/")
    return file(f"{head}/.wh.{base}" if head else f".wh.{base}", b"")


def opaque(directory_path: str) -> Entry:
    return file(f"{directory_path}/.wh..wh..opq", b"")


_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "link": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def tar_bytes(*entries: Entry) -> bytes:
    """An uncompressed tar of ``entries``, names written exactly as given (absolute and ``..`` too)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = _TYPES[entry.kind]
            info.mode = entry.mode
            info.mtime = 1_700_000_000
            info.linkname = entry.target
            info.size = len(entry.data) if entry.kind == "file" else 0
            tar.addfile(info, io.BytesIO(entry.data) if entry.kind == "file" else None)
    return raw.getvalue()


@dataclass(frozen=True)
class Found:
    """A path of a result tar: its kind, permission bits, content or link target."""

    kind: str
    mode: int
    data: bytes = b""
    target: str = ""


def read_tree(source: IO[bytes] | bytes) -> dict[str, Found]:
    """path -> what the tar holds there; hard links resolved to their target's content, marked "link"."""
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    tree: dict[str, Found] = {}
    with tarfile.open(fileobj=stream, mode="r:*") as tar:
        for member in tar:
            name = member.name.removeprefix("./").rstrip("/")
            if not name or name == ".":
                continue
            assert name not in tree, f"{name} appears twice"
            if member.isdir():
                tree[name] = Found("dir", member.mode)
            elif member.issym():
                tree[name] = Found("symlink", member.mode, target=member.linkname)
            elif member.islnk():
                target = member.linkname.removeprefix("./")
                assert target in tree, f"hard link {name} -> {target} before its target"
                tree[name] = Found("link", member.mode, tree[target].data, target)
            elif member.isreg():
                handle = tar.extractfile(member)
                assert handle is not None
                tree[name] = Found("file", member.mode, handle.read())
            else:
                tree[name] = Found("other", member.mode)
    return tree


BASE = tar_bytes(
    directory("etc"),
    file("etc/os-release", "ID=test\n"),
    file("etc/old.conf", "old"),
    directory("app"),
    file("app/run.sh", "#!/bin/sh\necho base\n", mode=0o755),
    directory("cache"),
    file("cache/a", "a"),
    file("shared", "linked content"),
    hardlink("shared-link", "shared"),
)
TOP = tar_bytes(
    whiteout("etc/old.conf"),
    directory("cache"),
    opaque("cache"),
    file("cache/b", "b"),
    file("app/run.sh", "#!/bin/sh\necho top\n", mode=0o755),
    symlink("app/current", "run.sh"),
)
EXPECTED = {
    "etc": "dir",
    "etc/os-release": "file",
    "app": "dir",
    "app/run.sh": "file",
    "app/current": "symlink",
    "cache": "dir",
    "cache/b": "file",
    "shared": "file",
    "shared-link": "link",
}


def push_image(
    client: RegistryClient, ref: Reference, tars: list[bytes], *, docker: bool = False
) -> tuple[Digest, dict[str, Any]]:
    """An image whose layers are ``tars`` gzipped; returns its digest and config."""
    layers, diff_ids = [], []
    for tar in tars:
        blob = gzip.compress(tar, mtime=0)
        blob_uploads.upload(client, ref, Digest.of(blob), len(blob), [blob])
        layer_type = MediaType.DOCKER_LAYER if docker else MediaType.OCI_LAYER_GZIP
        layers.append({"mediaType": layer_type, "digest": str(Digest.of(blob)), "size": len(blob)})
        diff_ids.append(str(Digest.of(tar)))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/app/run.sh"], "Labels": {"base": "yes"}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"layer {i}"} for i in range(len(tars))],
    }
    raw_config = json.dumps(config).encode()
    blob_uploads.upload(client, ref, Digest.of(raw_config), len(raw_config), [raw_config])
    manifest = {
        "schemaVersion": 2,
        "mediaType": MediaType.DOCKER_MANIFEST if docker else MediaType.OCI_MANIFEST,
        "config": {
            "mediaType": MediaType.DOCKER_CONFIG if docker else MediaType.OCI_CONFIG,
            "digest": str(Digest.of(raw_config)),
            "size": len(raw_config),
        },
        "layers": layers,
    }
    raw = json.dumps(manifest).encode()
    media_type = MediaType.DOCKER_MANIFEST if docker else MediaType.OCI_MANIFEST
    return client.put_manifest(ref, raw, media_type), config
