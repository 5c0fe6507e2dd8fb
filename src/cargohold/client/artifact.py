"""OCI artifacts (image-spec 1.1): files pushed as the layers of an image manifest with ``artifactType``
and the empty config, optionally referring to a ``subject``; pulled back into a directory under their
titles (``org.opencontainers.image.title``), as oras pushes and pulls them.

A pull writes nothing until every title has been checked: a title that is absolute, has a ``..`` part,
names a directory, or passes through (or is) a symbolic link refuses the whole pull. The files are
downloaded (and verified) into a hidden folder inside the directory first and moved into place at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ..digest import Digest
from ..formats import Descriptor, MediaType, is_image_manifest, is_index
from ..reference import Reference
from . import blobs, referrers
from .errors import ClientError, RegistryResponseError
from .pull import send_blob
from .registry import RegistryClient

TITLE: Final = "org.opencontainers.image.title"
#: a file's media type when none is given: oras's default
DEFAULT_FILE_TYPE: Final = "application/vnd.oci.image.layer.v1.tar"
EMPTY_JSON: Final = b"{}"
EMPTY_DESCRIPTOR: Final = Descriptor(MediaType.OCI_EMPTY, Digest.of(EMPTY_JSON), len(EMPTY_JSON))
#: RFC 6838 type/subtype, as the image-spec's descriptor schema checks it
_MEDIA_TYPE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$")
_READ: Final = 1024 * 1024


def check_media_type(text: str, what: str = "media type") -> str:
    """``text`` if it is a media type (``type/subtype``), else a ValueError naming ``what``."""
    if not _MEDIA_TYPE.match(text):
        raise ValueError(f"{what} {text!r} is not a media type (type/subtype, e.g. application/json)")
    return text


def parse_annotations(items: Sequence[str]) -> dict[str, str]:
    """``K=V`` pairs as a mapping; a pair without ``=`` or with an empty key is a ValueError."""
    found: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"annotation {item!r} is not KEY=VALUE")
        found[key] = value
    return found


@dataclass(frozen=True, slots=True)
class ArtifactFile:
    """A file to push: its path, the media type of its layer, and its title (the file's name)."""

    path: Path
    media_type: str

    @property
    def title(self) -> str:
        return self.path.name

    @classmethod
    def parse(cls, text: str) -> ArtifactFile:
        """``FILE[:MEDIATYPE]`` (a name holding a colon is a file if such a file exists, as oras reads it)."""
        path, sep, media_type = text.rpartition(":")
        if not sep or Path(text).exists():
            path, media_type = text, DEFAULT_FILE_TYPE
        elif "/" not in media_type:  # "dir/a:b" with no file "dir/a:b" and no media type after the colon
            raise ValueError(f"{text!r}: no file {text!r}, and {media_type!r} is not a media type")
        check_media_type(media_type, f"{text!r}: media type")
        file = cls(Path(path), media_type)
        if not file.path.exists():
            raise ValueError(f"{path}: no such file")
        if not file.path.is_file():
            raise ValueError(f"{path}: not a regular file")
        return file


@dataclass(frozen=True, slots=True)
class PushedArtifact:
    """What :func:`push_artifact` wrote."""

    reference: Reference
    digest: Digest
    size: int
    artifact_type: str
    layers: tuple[Descriptor, ...]
    subject: Descriptor | None

    def to_json(self) -> dict[str, Any]:
        return {"reference": str(self.reference), "digest": str(self.digest), "size": self.size,
                "mediaType": MediaType.OCI_MANIFEST, "artifactType": self.artifact_type,
                "subject": self.subject.to_json() if self.subject else None,
                "layers": [d.to_json() for d in self.layers]}


def _hash_file(path: Path) -> tuple[Digest, int]:
    hasher = hashlib.sha256()
    size = 0
    with path.open("rb") as stream:
        while block := stream.read(_READ):
            hasher.update(block)
            size += len(block)
    return Digest("sha256", hasher.hexdigest()), size


def _read_file(path: Path) -> Iterator[bytes]:
    with path.open("rb") as stream:
        while block := stream.read(_READ):
            yield block


def resolve_subject(client: RegistryClient, target: Reference, subject: Reference) -> Descriptor:
    """The descriptor of ``subject``, which must be in ``target``'s repository (referrers are listed per
    repository)."""
    if (subject.registry, subject.repository) != (target.registry, target.repository):
        raise ValueError(f"subject {subject} is not in {target.registry}/{target.repository}, "
                         "where the artifact goes: a referrer must be in its subject's repository")
    try:
        info = client.head_manifest(subject)
    except RegistryResponseError as exc:
        if exc.status == 404:
            raise ClientError(f"subject {subject}: no such manifest") from None
        raise
    return Descriptor(info.media_type, info.digest, info.size)


def push_artifact(
    client: RegistryClient,
    target: Reference,
    files: Sequence[ArtifactFile],
    artifact_type: str,
    *,
    subject: Reference | None = None,
    annotations: Mapping[str, str] | None = None,
) -> PushedArtifact:
    """Push ``files`` as an artifact to ``target`` (by its tag, or by digest when it has none)."""
    check_media_type(artifact_type, "artifact type")
    titles = [f.title for f in files]
    if len(set(titles)) != len(titles):
        raise ValueError(f"two files share a name: {sorted({t for t in titles if titles.count(t) > 1})}")
    about = resolve_subject(client, target, subject) if subject is not None else None
    layers = []
    for file in files:
        digest, size = _hash_file(file.path)
        layers.append(Descriptor(file.media_type, digest, size, annotations={TITLE: file.title}))
    send_blob(client, target, EMPTY_DESCRIPTOR, None, lambda: [EMPTY_JSON])
    for file, layer in zip(files, layers, strict=True):
        send_blob(client, target, layer, None, lambda path=file.path: _read_file(path))  # type: ignore[misc]
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MediaType.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": EMPTY_DESCRIPTOR.to_json(),
        # image-spec: an artifact without files has the empty descriptor as its one layer
        "layers": [d.to_json() for d in layers] or [EMPTY_DESCRIPTOR.to_json()],
    }
    if about is not None:
        document["subject"] = about.to_json()
    if annotations:
        document["annotations"] = dict(annotations)
    raw = json.dumps(document, indent=2).encode()
    where = target if target.tag is not None else target.with_digest(Digest.of(raw))
    digest = referrers.put_manifest(client, where, raw, MediaType.OCI_MANIFEST)
    return PushedArtifact(where, digest, len(raw), artifact_type, tuple(layers), about)


@dataclass(frozen=True, slots=True)
class PulledArtifact:
    """What :func:`pull_artifact` wrote: each title with its path, and the layers without a title."""

    digest: Digest
    artifact_type: str | None
    files: tuple[tuple[str, Path, Descriptor], ...]
    untitled: int

    def to_json(self) -> dict[str, Any]:
        return {"digest": str(self.digest), "artifactType": self.artifact_type,
                "files": [{"title": t, "path": str(p), "digest": str(d.digest), "size": d.size,
                           "mediaType": d.media_type} for t, p, d in self.files],
                "untitled": self.untitled}


def safe_path(directory: Path, title: str) -> Path:
    """Where ``title`` goes inside ``directory``; a ValueError if it would go anywhere else."""
    if not title or "\x00" in title:
        raise ValueError(f"title {title!r}: not a file name")
    if title.startswith("/"):
        raise ValueError(f"title {title!r}: an absolute path, outside the output directory")
    parts = [p for p in title.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"title {title!r}: a '..' would leave the output directory")
    if not parts:
        raise ValueError(f"title {title!r}: not a file name")
    path = directory
    for i, part in enumerate(parts):
        path = path / part
        if path.is_symlink():
            raise ValueError(f"title {title!r}: {path} is a symbolic link")
        if i < len(parts) - 1 and path.exists() and not path.is_dir():
            raise ValueError(f"title {title!r}: {path} is not a directory")
    if path.is_dir():
        raise ValueError(f"title {title!r}: {path} is a directory")
    return path


def pull_artifact(client: RegistryClient, ref: Reference, directory: Path) -> PulledArtifact:
    """Write the titled layers of the artifact at ``ref`` into ``directory`` (see the module docstring)."""
    top = client.get_manifest(ref)
    if is_index(top.media_type):
        raise ClientError(f"{ref} is an index, not an artifact: pull one of its manifests by digest")
    if not is_image_manifest(top.media_type):
        raise ClientError(f"{ref} is a {top.media_type or 'manifest of unknown type'}, not an artifact")
    manifest = top.parse()
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{directory}: not a directory")
    root = directory.resolve() if directory.exists() else directory.absolute()
    titled: list[tuple[str, Path, Descriptor]] = []
    seen: set[Path] = set()
    for layer in manifest.layers:
        title = (layer.annotations or {}).get(TITLE)
        if title is None:
            continue
        path = safe_path(root, title)
        if path in seen:
            raise ValueError(f"title {title!r}: two layers have it")
        seen.add(path)
        titled.append((title, path, layer))
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".cargohold-pull-", dir=root))
    try:
        for i, (_, _, layer) in enumerate(titled):
            with (staging / str(i)).open("xb") as out:
                for chunk in blobs.stream(client, ref, layer.digest, layer.size):
                    out.write(chunk)
        for i, (_, path, _) in enumerate(titled):
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / str(i), path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return PulledArtifact(top.digest, manifest.artifact_type, tuple(titled), len(manifest.layers) - len(titled))
