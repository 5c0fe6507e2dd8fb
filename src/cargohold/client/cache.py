"""A local content-addressed blob cache, so that a re-pull fetches only what is missing.

Layout of the cache directory::

    ROOT/
      blobs/sha256/<hex>          complete, verified blobs (never modified once renamed in)
      partial/sha256-<hex>        an interrupted download, resumed with Range next time
      sources/sha256-<hex>        "registry/repository" lines where the blob was seen: mount hints

A blob enters ``blobs/`` only by an atomic rename after its digest and size
were checked, so a reader never sees a partial or corrupt blob there.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from ..digest import Digest
from ..reference import Reference
from . import blobs
from .blobs import Progress, Verifier
from .registry import RegistryClient


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cargohold``, else ``~/.cache/cargohold``."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "cargohold"


class BlobCache:
    """Verified blobs on disk by digest; safe to share between threads of one process."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_cache_dir()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def path(self, digest: Digest) -> Path:
        return self.root / "blobs" / digest.algorithm / digest.hex

    def partial_path(self, digest: Digest) -> Path:
        return self.root / "partial" / f"{digest.algorithm}-{digest.hex}"

    def has(self, digest: Digest, size: int | None = None) -> bool:
        try:
            actual = self.path(digest).stat().st_size
        except FileNotFoundError:
            return False
        return size is None or size < 0 or actual == size

    def _lock(self, digest: Digest) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(str(digest), threading.Lock())

    def fetch(
        self,
        client: RegistryClient,
        repository: Reference,
        digest: Digest,
        size: int | None,
        progress: Progress | None = None,
    ) -> Path:
        """The cached blob's path, downloading (or resuming) it first if it is not cached."""
        with self._lock(digest):
            target = self.path(digest)
            if self.has(digest, size):
                if progress is not None and size:
                    progress(size)
                return target
            partial = self.partial_path(digest)
            partial.parent.mkdir(parents=True, exist_ok=True)
            blobs.download(client, repository, digest, size, partial, progress)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, target)
            return target

    def put_bytes(self, digest: Digest, data: bytes) -> Path:
        """Store small content already verified in memory (manifests, configs)."""
        verifier = Verifier(f"blob {digest}", digest, len(data))
        verifier.update(data)
        verifier.verify()
        target = self.path(digest)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        return target

    def remember(self, digest: Digest, registry: str, repository: str) -> None:
        """Note that ``registry/repository`` holds ``digest``, for a later cross-repository mount."""
        path = self.root / "sources" / f"{digest.algorithm}-{digest.hex}"
        line = f"{registry}/{repository}"
        with self._lock(digest):
            known = path.read_text().splitlines() if path.exists() else []
            if line in known:
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as out:
                out.write(line + "\n")

    def sources(self, digest: Digest, registry: str) -> list[str]:
        """Repositories of ``registry`` known to hold ``digest`` (most recent last)."""
        path = self.root / "sources" / f"{digest.algorithm}-{digest.hex}"
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            return []
        prefix = registry + "/"
        return [line[len(prefix) :] for line in lines if line.startswith(prefix)]

    def clear(self) -> None:
        """Remove every cached and partial blob."""
        shutil.rmtree(self.root, ignore_errors=True)
