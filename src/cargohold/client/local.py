"""Copies between local transports, with no registry between: OCI layouts and docker-archives.

::

    oci:DIR[:TAG]            -> oci:DIR[:TAG]              the image, or a whole index
    oci:DIR[:TAG]            -> docker-archive:FILE[:REF]  one image (the platform's, for an index)
    docker-archive:FILE[:REF] -> oci:DIR[:TAG]             the manifest :func:`.archive.load` builds
    docker-archive:FILE[:REF] -> docker-archive:FILE[:REF]

Layer bytes are kept as they are: an archive stores them as :func:`.archive.save`
does; a layout gets the manifest :func:`.archive.load` builds, in its OCI form
(skopeo and umoci read no other kind from a layout), so an OCI image with gzip
layers comes back digest-identical from oci -> docker-archive -> oci. Every
blob streams in chunks and is verified against its digest as it passes. The
destination appears only complete: an archive is renamed into place once
written, a layout's tag is written last, and a layout this copy created is
removed again if the copy fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..digest import Digest
from ..formats import Descriptor, Platform, parse_manifest
from ..reference import Reference, ReferenceError
from . import archive
from .blobs import TransferProgress, Verifier
from .errors import LayoutError, UnsupportedOperation
from .image import Node, blobs_of, check_platform, choose_root, walk
from .layout import REF_NAME, OCILayout
from .pull import TransferResult


@dataclass(frozen=True, slots=True)
class LocalLayout:
    """``oci:PATH[:TAG]``: an image (or index) of an OCI layout; no tag: its only entry."""

    path: Path
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class LocalArchive:
    """``docker-archive:PATH[:REF]``: an image of a docker-archive, named by one of its RepoTags."""

    path: Path
    name: str | None = None


LocalImage = LocalLayout | LocalArchive


@dataclass
class _Source:
    """What a copy reads: manifests (children first, the root last), and each blob's chunks.

    The chunks are the bytes as stored; the destination verifies them (once) as they are written.
    """

    what: str
    nodes: list[Node]
    config: Callable[[Descriptor], bytes]
    chunks: Callable[[Descriptor], Iterable[bytes]]
    tag: str | None
    repo_tags: list[str]

    @property
    def root(self) -> Node:
        return self.nodes[-1]


def copy_local(
    src: LocalImage,
    dst: LocalImage,
    *,
    platform: Platform | None = None,
    all_platforms: bool = False,
    progress: TransferProgress | None = None,
) -> TransferResult:
    """Copy an image from ``src`` to ``dst``, both on this machine.

    From a layout, an index goes whole to a layout unless ``platform`` picks one
    of its images (as a push does); a docker-archive holds single images, so the
    image for ``platform`` (default: this machine's) goes to one. A single image
    must be for ``platform`` if one is given. Into a layout, the image is named
    ``dst.tag``, else the source's tag; into an archive, ``dst.name`` is its
    RepoTag, else the source archive's RepoTags (a layout's image gets none, as
    with skopeo).
    """
    if isinstance(dst, LocalArchive) and all_platforms:
        raise ValueError("a docker-archive holds single images: --all-platforms cannot be written to one")
    if all_platforms and platform is not None:
        raise ValueError("--platform and --all-platforms exclude each other")
    repo_tag = _repo_tag(dst.name) if isinstance(dst, LocalArchive) and dst.name else None
    with contextlib.ExitStack() as stack:
        if isinstance(src, LocalLayout):
            source = _layout_source(src, platform, all_platforms, default_all=isinstance(dst, LocalLayout))
        else:
            source = _archive_source(src, platform, stack, oci=isinstance(dst, LocalLayout))
        if isinstance(dst, LocalLayout):
            result = _to_layout(source, dst, progress)
        else:
            result = _to_archive(source, dst.path, [repo_tag] if repo_tag else source.repo_tags, progress)
    return result


def _repo_tag(name: str) -> str:
    """A docker-archive's RepoTag: a named reference with a tag (``:latest`` if none), never a digest."""
    try:
        ref = Reference.parse(name)
    except ReferenceError as exc:
        raise ValueError(f"docker-archive name {name!r}: {exc}") from None
    if ref.digest is not None:
        raise ValueError(f"docker-archive name {name!r}: a docker-archive names images by tag, not digest")
    return name if ref.tag is not None and name.endswith(f":{ref.tag}") else f"{name}:latest"


def _layout_source(
    src: LocalLayout, platform: Platform | None, all_platforms: bool, *, default_all: bool
) -> _Source:
    layout = OCILayout(src.path)
    if not src.path.is_dir():
        raise LayoutError(f"{src.path}: no such directory")
    if not layout.exists():
        raise LayoutError(f"{src.path}: not an OCI image layout (no oci-layout file)")
    top = layout.resolve(src.tag)
    raw = layout.read_blob(top.digest)

    def fetch(descriptor: Descriptor) -> bytes:
        return layout.read_blob(descriptor.digest)

    what = f"oci:{src.path}" + (f":{src.tag}" if src.tag else "")
    root = Node(top, raw, parse_manifest(raw, top.media_type))
    root = choose_root(root, fetch, fetch, what, platform, all_platforms, default_all=default_all)
    return _Source(
        what,
        walk(root, fetch, lambda _: True),
        fetch,
        lambda d: layout.iter_blob(d.digest, d.size, verify=False),
        src.tag or (top.annotations or {}).get(REF_NAME),
        [],
    )


def _archive_source(
    src: LocalArchive, platform: Platform | None, stack: contextlib.ExitStack, *, oci: bool
) -> _Source:
    if not src.path.is_file():
        raise LayoutError(f"{src.path}: no such file")
    what = f"docker-archive:{src.path}" + (f":{src.name}" if src.name else "")
    image = archive.load(src.path, src.name, oci=oci)
    if platform is not None:
        check_platform(platform, image.config, what)
    tar = stack.enter_context(archive.open_tar(src.path))
    members = dict(zip((d.digest for d in image.layers), image.layer_names, strict=False))
    config_digest = Digest.of(image.config)

    def config(descriptor: Descriptor) -> bytes:
        assert descriptor.digest == config_digest
        return image.config

    def chunks(descriptor: Descriptor) -> Iterable[bytes]:
        if descriptor.digest == config_digest:
            return [image.config]
        return archive.member_chunks(tar, members[descriptor.digest], src.path)

    parsed = parse_manifest(image.manifest, image.media_type)
    tag = None
    if src.name:
        with contextlib.suppress(ReferenceError):
            tag = Reference.parse(src.name).tag
    names = [src.name] if src.name else list(image.repo_tags)
    descriptor = Descriptor(image.media_type, Digest.of(image.manifest), len(image.manifest))
    return _Source(what, [Node(descriptor, image.manifest, parsed)], config, chunks, tag, names)


def _to_layout(source: _Source, dst: LocalLayout, progress: TransferProgress | None) -> TransferResult:
    layout = OCILayout(dst.path)
    if dst.path.exists() and not dst.path.is_dir():
        raise LayoutError(f"{dst.path}: exists and is not a directory")
    if dst.path.is_dir() and any(dst.path.iterdir()) and not layout.exists():
        raise LayoutError(f"{dst.path}: not empty and not an OCI image layout; refusing to write into it")
    existed, fresh = dst.path.exists(), not layout.exists()
    top = dst.path.absolute()  # the outermost directory this copy creates, if it creates any
    while not top.parent.exists():
        top = top.parent
    needed = blobs_of(source.nodes)
    if progress is not None:
        progress.add_total(sum(d.size for d in needed))
    advance = progress.advance if progress is not None else None
    written = 0
    try:
        layout.create()
        for descriptor in needed:
            if layout.has_blob(descriptor.digest, descriptor.size):
                if advance is not None:
                    advance(descriptor.size)
                continue
            layout.write_blob(descriptor.digest, descriptor.size, source.chunks(descriptor), advance)  # verifies
            written += 1
        for node in source.nodes:
            layout.write_blob_bytes(node.descriptor.digest, node.raw)
        annotations = {k: v for k, v in (source.root.descriptor.annotations or {}).items() if k != REF_NAME}
        root = dataclasses.replace(source.root.descriptor, annotations=annotations or None)
        layout.set_tag(dst.tag or source.tag, root)
    except BaseException:
        if fresh:  # take back what this copy made: the directories, or what it wrote into an empty one
            for made in [top] if not existed else list(dst.path.iterdir()):
                if made.is_dir():
                    shutil.rmtree(made, ignore_errors=True)
                else:
                    made.unlink(missing_ok=True)
        raise
    return TransferResult(
        root.digest, root.media_type, len(source.nodes), written, len(needed) - written, 0, 0
    )


def _to_archive(
    source: _Source, path: Path, repo_tags: list[str], progress: TransferProgress | None
) -> TransferResult:
    root = source.root
    if root.manifest.is_index:
        raise UnsupportedOperation(f"{source.what}: an index within an index cannot be saved as a docker-archive")
    if root.manifest.config is None:
        raise UnsupportedOperation(
            f"{source.what}: {root.manifest.media_type} images cannot be saved as a docker-archive"
        )
    archive.check_destination(path)
    config = source.config(root.manifest.config)
    layers = list(root.manifest.layers)
    if progress is not None:
        progress.add_total(sum(d.size for d in {d.digest: d for d in layers}.values()))

    def open_layer(layer: Descriptor) -> tuple[int, Iterable[bytes]]:
        verifier = Verifier(f"{source.what}: blob {layer.digest}", layer.digest, layer.size)
        return layer.size, _verified(source.chunks(layer), verifier, progress)

    entry = archive.SavedImage(f"{root.manifest.config.digest.hex}.json", config, layers, repo_tags)
    archive.write_archive(path, [entry], open_layer)
    distinct = len({d.digest for d in layers})
    return TransferResult(root.descriptor.digest, root.descriptor.media_type, 1, distinct + 1, 0, 0)


def _verified(chunks: Iterable[bytes], verifier: Verifier, progress: TransferProgress | None) -> Iterable[bytes]:
    for chunk in chunks:
        verifier.update(chunk)
        if progress is not None:
            progress.advance(len(chunk))
        yield chunk
    verifier.verify()
