"""A local content-addressed blob cache, so that a re-pull fetches only what is missing.

Layout of the cache directory::

    ROOT/
      blobs/sha256/<hex>          complete, verified blobs (never modified once renamed in)
      partial/sha256-<hex>        an interrupted download, resumed with Range next time
      sources/sha256-<hex>        "registry/repository" lines where the blob was seen: mount hints
      in-use/<pid>-<random>       the digests a running transfer uses, one a line (flock'ed by it)
      lock                        flock: shared while a digest is claimed, exclusive while pruning

A blob enters ``blobs/`` only by an atomic rename after its digest and size
were checked, so a reader never sees a partial or corrupt blob there.

The cache is bounded (:data:`DEFAULT_MAX_SIZE`, or ``CARGOHOLD_CACHE_MAX_SIZE``):
after a transfer that downloaded something, the least recently used blobs go
until the cache fits. A blob's last use is its file's mtime, set again at each
cache hit. Pruning never removes what a running transfer, in any process, has
claimed: every digest is claimed (written to the transfer's ``in-use`` file,
under the shared lock) before it is looked up, and a prune decides under the
exclusive lock. A claim ends with the transfer, or with its process (its flock
is gone; the next prune removes the file).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..digest import Digest
from ..reference import Reference
from ..sizes import parse_size
from . import blobs
from .blobs import Progress, Verifier
from .registry import RegistryClient

#: 10 GiB: room for a few large images (CUDA and ML bases are 5-8 GiB), small against today's disks.
#: A fixed figure, not a fraction of free disk: the limit should not drift as other files fill the disk.
DEFAULT_MAX_SIZE = 10 * 1024**3
#: the environment variable that changes it (a size as :func:`parse_size` reads it, or "none")
MAX_SIZE_ENV = "CARGOHOLD_CACHE_MAX_SIZE"

_AGES = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """Seconds from ``7d``, ``12h``, ``30m``, ``45s`` or ``2w``."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text, re.IGNORECASE)
    if found is None:
        raise ValueError(f"invalid age {text!r}: expected a number and s, m, h, d or w (7d, 12h)")
    return float(found.group(1)) * _AGES[found.group(2).lower()]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cargohold``, else ``~/.cache/cargohold``."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "cargohold"


def default_max_size() -> int | None:
    """:data:`DEFAULT_MAX_SIZE`, or ``CARGOHOLD_CACHE_MAX_SIZE`` ("none": unbounded)."""
    text = os.environ.get(MAX_SIZE_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_SIZE
    if text.lower() in ("none", "unlimited"):
        return None
    return parse_size(text)


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A file of the cache that takes room: a blob, or a partial download."""

    path: Path
    digest: str  # "sha256:<hex>"
    partial: bool
    size: int
    used: float  # seconds since the epoch


@dataclass(frozen=True, slots=True)
class PruneResult:
    removed: int
    freed: int
    kept: int
    kept_bytes: int
    in_use: int  # entries kept because a running transfer claimed them


class BlobCache:
    """Verified blobs on disk by digest; safe to share between threads of one process, and between
    processes (see the module docstring).

    :param max_size: bytes to keep after a transfer; -1: :func:`default_max_size`, None: no limit
    """

    def __init__(self, root: Path | None = None, max_size: int | None = -1) -> None:
        self.root = root or default_cache_dir()
        self.max_size = default_max_size() if max_size == -1 else max_size
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._claim: IO[str] | None = None  # this instance's in-use file, flock'ed while open
        self._claimed: set[str] = set()
        self._depth = 0
        self._downloaded = False

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
        self.claim(digest)
        with self._lock(digest):
            target = self.path(digest)
            if self._touch(digest, size):
                if progress is not None and size:
                    progress(size)
                return target
            partial = self.partial_path(digest)
            partial.parent.mkdir(parents=True, exist_ok=True)
            with self._download_lock(digest):  # another process may be fetching it: wait, then look again
                if self._touch(digest, size):
                    if progress is not None and size:
                        progress(size)
                    return target
                blobs.download(client, repository, digest, size, partial, progress)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(partial, target)
            self._downloaded = True
            return target

    def _touch(self, digest: Digest, size: int | None) -> bool:
        """Whether the blob is cached; if so, mark it used now (least recently used goes first)."""
        if not self.has(digest, size):
            return False
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.path(digest))
            return True
        return False

    @contextlib.contextmanager
    def _download_lock(self, digest: Digest) -> Iterator[None]:
        path = self.root / "partial" / f"{digest.algorithm}-{digest.hex}.lock"
        with path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    # claims: what running transfers use, kept from pruning

    @contextlib.contextmanager
    def _root_lock(self, operation: int) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "lock").open("a") as handle:
            fcntl.flock(handle, operation)
            yield

    def claim(self, digest: Digest) -> None:
        """Keep ``digest`` (blob and partial download) from being pruned until this transfer ends."""
        key = str(digest)
        with self._guard:
            if key in self._claimed:
                return
            with self._root_lock(fcntl.LOCK_SH):
                if self._claim is None:
                    folder = self.root / "in-use"
                    folder.mkdir(parents=True, exist_ok=True)
                    handle = (folder / f"{os.getpid()}-{uuid.uuid4().hex[:12]}").open("a")
                    fcntl.flock(handle, fcntl.LOCK_EX)
                    self._claim = handle
                self._claim.write(key + "\n")
                self._claim.flush()
            self._claimed.add(key)

    @contextlib.contextmanager
    def transfer(self) -> Iterator[BlobCache]:
        """A transfer's use of the cache: its claims end with the outermost one, and then, if it
        downloaded anything, the cache is trimmed to :attr:`max_size`."""
        with self._guard:
            self._depth += 1
        try:
            yield self
        finally:
            with self._guard:
                self._depth -= 1
                last = self._depth == 0
            if last:
                self.release()
                if self._downloaded and self.max_size is not None:
                    self._downloaded = False
                    self.prune(max_size=self.max_size)

    def release(self) -> None:
        """End this instance's claims (a transfer's end does it; so does the end of the process)."""
        with self._guard:
            handle, self._claim = self._claim, None
            self._claimed.clear()
        if handle is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(handle.name)
            handle.close()

    def _claims_of_others(self) -> set[str]:
        """Digests claimed by running transfers (call under the exclusive lock); ended ones' files go."""
        claimed: set[str] = set()
        folder = self.root / "in-use"
        if not folder.is_dir():
            return claimed
        for path in folder.iterdir():
            try:
                handle = path.open("r")
            except FileNotFoundError:
                continue
            with handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:  # held: a running transfer
                    claimed.update(line.strip() for line in handle if line.strip())
                    continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # its transfer ended without releasing (killed)
        return claimed

    # size, use and pruning

    def entries(self) -> list[CacheEntry]:
        """Blobs and partial downloads, least recently used first."""
        found: list[CacheEntry] = []
        for folder, partial in ((self.root / "blobs", False), (self.root / "partial", True)):
            if not folder.is_dir():
                continue
            for path in folder.rglob("*"):
                name = path.name
                if partial and (name.endswith(".lock") or "-" not in name):
                    continue
                if not partial and name.startswith("."):
                    continue
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                if not path.is_file():
                    continue
                digest = name.replace("-", ":", 1) if partial else f"{path.parent.name}:{name}"
                found.append(CacheEntry(path, digest, partial, stat.st_size, stat.st_mtime))
        found.sort(key=lambda e: e.used)
        return found

    def _forget_sources(self, cutoff: float | None) -> None:
        """Mount hints (a few bytes each) not written to since ``cutoff`` (None: all)."""
        folder = self.root / "sources"
        if folder.is_dir():
            for path in folder.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    if cutoff is None or path.stat().st_mtime < cutoff:
                        path.unlink()

    def _remove_download_locks(self, protected: set[str]) -> None:
        """Lock files of downloads no running transfer claims (a downloader claims before locking)."""
        folder = self.root / "partial"
        if folder.is_dir():
            for path in folder.glob("*.lock"):
                if path.name.removesuffix(".lock").replace("-", ":", 1) not in protected:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()

    def prune(self, *, max_size: int | None = None, older_than: float | None = None) -> PruneResult:
        """Remove entries last used more than ``older_than`` seconds ago, then the least recently used
        until the rest fits in ``max_size`` bytes; neither given: everything. Entries claimed by a
        running transfer stay. Mount hints go by age, or all with everything."""
        everything = max_size is None and older_than is None
        if not self.root.is_dir():
            return PruneResult(0, 0, 0, 0, 0)
        with self._guard, self._root_lock(fcntl.LOCK_EX):
            protected = self._claims_of_others() | self._claimed
            entries = self.entries()
            total = sum(e.size for e in entries)
            cutoff = time.time() - older_than if older_than is not None else None
            removed = freed = in_use = 0
            for entry in entries:
                stale = cutoff is not None and entry.used < cutoff
                too_big = max_size is not None and total > max_size
                if not (everything or stale or too_big):
                    continue
                if entry.digest in protected:
                    in_use += 1
                    continue
                with contextlib.suppress(FileNotFoundError):
                    entry.path.unlink()
                    if entry.partial:
                        with contextlib.suppress(FileNotFoundError):
                            entry.path.with_name(entry.path.name + ".lock").unlink()
                removed += 1
                freed += entry.size
                total -= entry.size
            self._remove_download_locks(protected)
            if everything or cutoff is not None:
                self._forget_sources(None if everything else cutoff)
        return PruneResult(removed, freed, len(entries) - removed, total, in_use)

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
