"""OCI image layout directories: read and write, with every blob verified.

The layout (OCI image spec, ``image-layout.md``), as skopeo's ``oci:DIR:TAG`` writes it::

    DIR/
      oci-layout            {"imageLayoutVersion": "1.0.0"}
      index.json            an OCI index; entries named by "org.opencontainers.image.ref.name"
      blobs/sha256/<hex>    content-addressed blobs: layers, configs, manifests, indexes

Writes go to a temporary file in the same directory, are verified, then renamed
into place; ``index.json`` is rewritten (atomically) only after every blob it
points to is present, so an interrupted pull never leaves a tag pointing at
missing or unverified content.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final

from ..digest import Digest
from ..formats.descriptor import Descriptor
from ..formats.errors import ManifestError
from ..formats.mediatypes import MediaType
from .blobs import READ_SIZE, Progress, Verifier
from .errors import LayoutError

#: the annotation naming an entry of index.json (the tag, for skopeo and crane)
REF_NAME: Final = "org.opencontainers.image.ref.name"
LAYOUT_VERSION: Final = "1.0.0"


class OCILayout:
    """An OCI image layout directory (created on first write)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    # -- reading ----------------------------------------------------------------------------------

    def exists(self) -> bool:
        return (self.path / "oci-layout").is_file()

    def blob_path(self, digest: Digest) -> Path:
        return self.path / "blobs" / digest.algorithm / digest.hex

    def has_blob(self, digest: Digest, size: int | None = None) -> bool:
        try:
            actual = self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            return False
        return size is None or size < 0 or actual == size

    def read_blob(self, digest: Digest) -> bytes:
        """A blob's bytes, verified (for manifests and configs)."""
        try:
            data = self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise LayoutError(f"{self.path}: blob {digest} is missing") from None
        verifier = Verifier(f"{self.path}: blob {digest}", digest, None)
        verifier.update(data)
        verifier.verify()
        return data

    def iter_blob(self, digest: Digest, size: int | None = None, *, verify: bool = True) -> Iterator[bytes]:
        """A blob's bytes in chunks, verified at the end (``verify``: unless their reader verifies them)."""
        verifier = Verifier(f"{self.path}: blob {digest}", digest, size) if verify else None
        try:
            handle = self.blob_path(digest).open("rb")
        except FileNotFoundError:
            raise LayoutError(f"{self.path}: blob {digest} is missing") from None
        with handle:
            while block := handle.read(READ_SIZE):
                if verifier is not None:
                    verifier.update(block)
                yield block
        if verifier is not None:
            verifier.verify()

    def index(self) -> dict[str, Any]:
        """The parsed ``index.json`` (an empty index if the layout is new)."""
        if not self.path.exists():
            raise LayoutError(f"{self.path}: no such directory")
        try:
            data = json.loads((self.path / "index.json").read_bytes())
        except FileNotFoundError:
            if self.exists():
                return {"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "manifests": []}
            raise LayoutError(f"{self.path}: not an OCI image layout (no index.json)") from None
        except ValueError as exc:
            raise LayoutError(f"{self.path}/index.json: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("manifests", []), list):
            raise LayoutError(f"{self.path}/index.json: not an image index")
        return data

    def entries(self) -> list[Descriptor]:
        found = []
        for i, entry in enumerate(self.index().get("manifests") or []):
            try:
                found.append(Descriptor.from_json(entry, f"index.json manifests[{i}]"))
            except ManifestError as exc:
                raise LayoutError(f"{self.path}: {exc}") from None
        return found

    def tags(self) -> list[str]:
        return [
            d.annotations[REF_NAME] for d in self.entries() if d.annotations and REF_NAME in d.annotations
        ]

    def resolve(self, tag: str | None) -> Descriptor:
        """The index.json entry named ``tag``; with no tag, the only entry there is."""
        entries = self.entries()
        if tag is None:
            if len(entries) == 1:
                return entries[0]
            raise LayoutError(f"{self.path}: {len(entries)} images in the layout; name one with :TAG")
        for entry in entries:
            if entry.annotations and entry.annotations.get(REF_NAME) == tag:
                return entry
        raise LayoutError(f"{self.path}: no image named {tag!r} (have: {', '.join(self.tags()) or 'none'})")

    # -- writing ----------------------------------------------------------------------------------

    def create(self) -> None:
        (self.path / "blobs").mkdir(parents=True, exist_ok=True)
        marker = self.path / "oci-layout"
        if not marker.exists():
            marker.write_text(json.dumps({"imageLayoutVersion": LAYOUT_VERSION}))

    def write_blob(
        self, digest: Digest, size: int | None, chunks: Iterable[bytes], progress: Progress | None = None
    ) -> Path:
        """Write a blob from ``chunks``; it appears under its digest only once verified."""
        target = self.blob_path(digest)
        if self.has_blob(digest, size):
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        verifier = Verifier(f"blob {digest}", digest, size)
        try:
            with tmp.open("wb") as out:
                for chunk in chunks:
                    verifier.update(chunk)
                    out.write(chunk)
                    if progress is not None:
                        progress(len(chunk))
            verifier.verify()
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def write_blob_bytes(self, digest: Digest, data: bytes) -> Path:
        return self.write_blob(digest, len(data), [data])

    def link_blob_from(self, source: Path, digest: Digest, size: int | None) -> Path:
        """Give the layout a file just verified elsewhere (a fresh cache entry) by a hard link.

        No bytes are copied or hashed again; where linking is impossible (another
        file system), this is :meth:`copy_blob_from`.
        """
        target = self.blob_path(digest)
        if self.has_blob(digest, size):
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            os.link(source, tmp)
        except OSError:
            return self.copy_blob_from(source, digest, size)
        try:
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def copy_blob_from(self, source: Path, digest: Digest, size: int | None) -> Path:
        """Copy a file (the blob cache's) into the layout, verifying it again on the way."""

        def read() -> Iterator[bytes]:
            with source.open("rb") as handle:
                while block := handle.read(READ_SIZE):
                    yield block

        return self.write_blob(digest, size, read())

    def set_tag(self, tag: str | None, descriptor: Descriptor) -> None:
        """Point ``tag`` at ``descriptor`` in index.json: the last write of a pull."""
        if not self.has_blob(descriptor.digest, descriptor.size):
            raise LayoutError(
                f"{self.path}: refusing to tag {descriptor.digest}: its manifest is not in the layout"
            )
        with self._lock:
            self.create()
            index = self.index()
            manifests = [
                m
                for m in index.get("manifests") or []
                if not (tag is not None and (m.get("annotations") or {}).get(REF_NAME) == tag)
                and not (
                    tag is None
                    and m.get("digest") == str(descriptor.digest)
                    and not (m.get("annotations") or {}).get(REF_NAME)
                )
            ]
            entry = descriptor.to_json()
            if tag is not None:
                entry["annotations"] = {**(entry.get("annotations") or {}), REF_NAME: tag}
            manifests.append(entry)
            index["schemaVersion"] = 2
            index["mediaType"] = MediaType.OCI_INDEX
            index["manifests"] = manifests
            tmp = self.path / ".index.json.tmp"
            tmp.write_text(json.dumps(index, indent=2))
            os.replace(tmp, self.path / "index.json")


def remove_layout(path: Path) -> None:
    """Delete a layout directory (tests and ``--overwrite``)."""
    shutil.rmtree(path, ignore_errors=True)
