"""Blob store on a local filesystem (the embedded default).

Crash safety: a blob path only ever receives a file by ``os.replace`` after its
bytes were fsynced and their digest verified, and the directory entry is
fsynced afterwards, so a crash leaves either no blob or the right bytes.
Upload files are plain files appended to in place. ``upload_commit`` may be
repeated after a crash at any point of it (the bytes already placed stand).

A request's upload bytes are not waited onto the disk when it ends (that wait
was a third of each 64 MiB PATCH); ``upload_commit`` makes the whole upload
durable once. Until then they are trusted for this boot of the operating system
only (the writer's token names the kernel's boot id): a process crash loses
nothing (the kernel keeps the pages), but after an operating-system crash the
bytes may be gone or wrong, so ``state_trusted`` refuses a token of another
boot and the caller hashes the bytes actually on disk again. Where the boot id
is unknown, every request waits for the disk and its token is ``DURABLE``.

A crash can leave a blob file that no row names (bytes placed, then the commit lost: a database
restored from a backup older than the push, a blob row deleted before its file): :meth:`sweep`
(the periodic job of :class:`~.driver.Sweeper` stores) deletes each blob file that no commit in
flight and no blob row names once its modification time is ``orphan_grace_seconds`` old. A commit
that finds its blob placed already holds a shared ``flock`` on the file while it decides to keep
it; the sweep takes the exclusive one (or passes the file over) and reads the rows under it, so
either the commit's digest (recorded on its upload row before it looked) stops the sweep, or the
file is gone when the commit looks and the commit places its own bytes. Upload files that no
session names are the upload purge's (:meth:`cargohold.service.uploads.Uploads.purge`).

A full disk or quota (ENOSPC, EDQUOT) is raised as
:class:`~cargohold.errcodes.InsufficientStorage`, and what the failed step made
(a partly written request, an empty blob directory) is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import BinaryIO, Final, Protocol

from ..digest import ALGORITHMS, Digest
from ..errcodes import InsufficientStorage
from . import paths
from .driver import DURABLE, BlobMissing, StorageError, UploadBusy, UploadMissing, Written, check_upload_id

#: read size for streamed responses: large enough that per-chunk overhead vanishes
READ_CHUNK: Final = 1 << 20
#: how often the sweep runs at most (more often with a shorter grace), as the S3 store's
SWEEP_INTERVAL_SECONDS: Final = 3600.0
#: digests asked about in one query by the sweep
_SWEEP_BATCH: Final = 500


log: Final = logging.getLogger("cargohold.storage")

#: errors that mean "no room": the filesystem is full, or the server's user is over its quota
_NO_SPACE: Final = frozenset({errno.ENOSPC, errno.EDQUOT})


@contextlib.contextmanager
def _space_checked() -> Iterator[None]:
    """Raise a full disk as the registry's typed error; other OS errors pass unchanged."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _NO_SPACE:
            log.warning("registry out of space: %s", exc)  # one line for the operator, no traceback
            raise InsufficientStorage(f"registry out of space ({os.strerror(exc.errno).lower()})") from exc
        raise


def _check_upload_id(upload_id: str) -> None:
    check_upload_id("filesystem", upload_id)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: written bytes after which the writer asks the kernel to start putting them on disk
#: (without waiting): the fdatasync that ends a request then waits for the last window
#: only, and the disk works while the body is still arriving. Measured here: 1 GiB
#: written then fdatasynced took 1.4 s without it, 1.0 s with it.
WRITEBACK_WINDOW: Final = 8 << 20


def _load_sync_file_range() -> Callable[[int, int, int], None] | None:
    """Linux's ``sync_file_range(fd, offset, count, SYNC_FILE_RANGE_WRITE)``, or None elsewhere."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    write_flag = 2  # SYNC_FILE_RANGE_WRITE: start writeback of dirty pages, do not wait

    def start_writeback(fd: int, offset: int, count: int) -> None:
        function(fd, offset, count, write_flag)  # a hint: failure only means no head start

    return start_writeback


_START_WRITEBACK: Final = _load_sync_file_range()


def _read_boot_id() -> str | None:
    """This boot of the operating system (Linux); None where unknown."""
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as file:
            boot = file.read().strip().decode("ascii", "replace")
    except OSError:
        return None
    return boot or None


_BOOT_ID: str | None = _read_boot_id()


def _boot_token() -> str | None:
    """The token of bytes written but not yet synced in this boot; None: sync every request."""
    return None if _BOOT_ID is None else f"boot:{_BOOT_ID}"


class _FileWriter:
    """Appends to one upload file; see :class:`cargohold.storage.driver.BlobWriter`."""

    __slots__ = ("_file", "_start", "_end", "_kicked")

    def __init__(self, file: BinaryIO, start: int):
        self._file = file
        self._start = start
        self._end = start  # offset after the last write
        self._kicked = start  # writeback was started for the bytes before this offset

    def write(self, data: bytes | memoryview) -> None:
        with _space_checked():
            self._file.write(data)
            self._end += len(data)
            if _START_WRITEBACK is not None and self._end - self._kicked >= WRITEBACK_WINDOW:
                self._file.flush()
                _START_WRITEBACK(self._file.fileno(), self._kicked, self._end - self._kicked)
                self._kicked = self._end

    def close(self) -> Written:
        token = _boot_token()
        with _space_checked():
            self._file.flush()
            if token is None:
                os.fdatasync(self._file.fileno())
            elif _START_WRITEBACK is not None and self._end > self._kicked:
                _START_WRITEBACK(self._file.fileno(), self._kicked, self._end - self._kicked)
        size = self._file.tell()
        self._file.close()
        return Written(size, DURABLE if token is None else token)

    def abort(self) -> None:
        # After a full disk the buffered tail cannot be flushed: truncate the file itself
        # and drop what close() fails to write (it is past the kept size in any case).
        try:
            with contextlib.suppress(OSError):
                self._file.flush()
            os.ftruncate(self._file.fileno(), self._start)
        finally:
            with contextlib.suppress(OSError):
                self._file.close()


class _FileLock:
    __slots__ = ("_fd",)

    def __init__(self, fd: int):
        self._fd = fd

    async def release(self) -> None:
        os.close(self._fd)  # closing the descriptor drops its flock


class BlobNames(Protocol):
    """What the sweep asks the metadata database (:class:`cargohold.metadata.store.StoreState`)."""

    async def named_blobs(self, digests: Sequence[str]) -> set[str]: ...


class FilesystemBlobStore:
    """Blobs and uploads under one root directory (layout in :mod:`.paths`); ``names`` (the metadata
    database) lets it sweep blob files that no row names once ``orphan_grace_seconds`` old."""

    name = "filesystem"

    def __init__(self, root: str, names: BlobNames | None = None, orphan_grace_seconds: float = 24 * 3600.0):
        self.root = os.path.abspath(root)
        self._names = names
        #: how old (by modification time) a blob file that nothing names must be for the sweep to delete it
        self.orphan_grace = orphan_grace_seconds
        self.sweep_interval = min(SWEEP_INTERVAL_SECONDS, max(1.0, orphan_grace_seconds))
        os.makedirs(paths.uploads_dir(self.root), exist_ok=True)
        os.makedirs(os.path.join(self.root, "blobs"), exist_ok=True)

    async def check(self, writable: bool) -> None:
        mode = os.R_OK | os.X_OK | (os.W_OK if writable else 0)
        for folder in (os.path.join(self.root, "blobs"), paths.uploads_dir(self.root)):
            if not os.path.isdir(folder):
                raise StorageError(f"filesystem: {folder} is missing")
            if not os.access(folder, mode):
                raise StorageError(f"filesystem: {folder} is not {'writable' if writable else 'readable'}")

    def local_path(self, digest: Digest) -> str:
        return paths.blob_path(self.root, digest)

    async def stat(self, digest: Digest) -> int | None:
        try:
            return os.stat(paths.blob_path(self.root, digest)).st_size
        except FileNotFoundError:
            return None

    async def read(self, digest: Digest, start: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        try:
            file = open(paths.blob_path(self.root, digest), "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise BlobMissing(f"filesystem: no blob {digest}") from None
        async for chunk in _read_file(file, start, length):
            yield chunk

    async def delete(self, digest: Digest) -> bool:
        try:
            os.unlink(paths.blob_path(self.root, digest))
        except FileNotFoundError:
            return False
        return True

    async def upload_start(self, upload_id: str) -> None:
        _check_upload_id(upload_id)
        with _space_checked(), open(paths.upload_path(self.root, upload_id), "xb"):
            pass

    async def upload_lock(self, upload_id: str) -> _FileLock:
        _check_upload_id(upload_id)
        try:
            fd = os.open(paths.upload_path(self.root, upload_id), os.O_RDONLY)
        except FileNotFoundError:
            raise UploadMissing(f"filesystem: upload {upload_id} has no data") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # per open file: excludes other workers too
        except BlockingIOError:
            os.close(fd)
            raise UploadBusy(f"filesystem: upload {upload_id} is in use") from None
        return _FileLock(fd)

    async def upload_writer(self, upload_id: str, offset: int) -> _FileWriter:
        _check_upload_id(upload_id)
        try:
            file = open(paths.upload_path(self.root, upload_id), "r+b")  # noqa: SIM115 - writer closes
        except FileNotFoundError:
            raise UploadMissing(f"filesystem: upload {upload_id} has no data") from None
        size = os.fstat(file.fileno()).st_size
        if size < offset:
            file.close()
            raise UploadMissing(f"filesystem: upload {upload_id} holds {size} bytes, expected {offset}")
        if size > offset:
            file.truncate(offset)
        file.seek(offset)
        return _FileWriter(file, offset)

    def state_trusted(self, token: str) -> bool:
        return token == DURABLE or token == _boot_token()

    async def upload_read(self, upload_id: str, length: int) -> AsyncIterator[bytes]:
        _check_upload_id(upload_id)
        try:
            file = open(paths.upload_path(self.root, upload_id), "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise UploadMissing(f"filesystem: upload {upload_id} has no data") from None
        async for chunk in _read_file(file, 0, length):
            yield chunk

    async def upload_sync(self, upload_id: str) -> None:
        _check_upload_id(upload_id)
        await asyncio.to_thread(self._sync, upload_id)

    def _sync(self, upload_id: str) -> None:
        try:
            fd = os.open(paths.upload_path(self.root, upload_id), os.O_RDONLY)
        except FileNotFoundError:
            raise UploadMissing(f"filesystem: upload {upload_id} has no data") from None
        try:
            with _space_checked():
                os.fdatasync(fd)  # the bytes of requests that ended without waiting for the disk
        finally:
            os.close(fd)

    async def upload_commit(self, upload_id: str, digest: Digest) -> None:
        _check_upload_id(upload_id)
        await asyncio.to_thread(self._commit, upload_id, digest)

    def _commit(self, upload_id: str, digest: Digest) -> None:
        source = paths.upload_path(self.root, upload_id)
        target = paths.blob_path(self.root, digest)
        with _placed_blob(target) as placed:  # the sweep passes it over meanwhile
            if placed is not None and self._keep_placed(source, placed):
                return
            self._place(upload_id, digest, source, target)

    def _place(self, upload_id: str, digest: Digest, source: str, target: str) -> None:
        directory = os.path.dirname(target)
        made = _missing_dirs(directory)
        try:
            self._sync(upload_id)
            with _space_checked():
                os.makedirs(directory, exist_ok=True)
                os.replace(source, target)
                _fsync_dir(directory)
                for folder in made:  # a new folder's entry is in its parent, which must be durable too
                    _fsync_dir(os.path.dirname(folder))
        except BaseException as exc:
            for folder in made:  # deepest first; a concurrent commit may have filled one
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
            if isinstance(exc, UploadMissing | FileNotFoundError):
                if os.path.exists(target):
                    return  # the same commit, repeated by a resent request, placed it meanwhile
                raise UploadMissing(f"filesystem: upload {upload_id} has no data") from None
            if isinstance(exc, OSError):
                raise StorageError(f"filesystem: cannot place blob {digest}: {exc}") from exc
            raise

    def _keep_placed(self, source: str, placed: int) -> bool:
        """Whether the blob stored already (``placed`` bytes: a concurrent push, or this commit before a
        crash) stands; the upload's bytes, if still there, are then dropped."""
        try:
            size = os.stat(source).st_size
        except FileNotFoundError:
            return True
        if size != placed:
            return False  # the stored copy was cut short: replace it
        self._unlink_quietly(source)
        return True

    async def upload_delete(self, upload_id: str) -> None:
        _check_upload_id(upload_id)
        path = paths.upload_path(self.root, upload_id)
        # emptied first: an unlinked file keeps its space while a request holds it open (its
        # lock), and on a full disk that space is what the session row's deletion needs
        with contextlib.suppress(FileNotFoundError):
            os.truncate(path, 0)
        self._unlink_quietly(path)

    async def upload_ids(self) -> dict[str, float]:
        found = {}
        with os.scandir(paths.uploads_dir(self.root)) as entries:
            for entry in entries:
                try:
                    found[entry.name] = entry.stat().st_mtime
                except FileNotFoundError:
                    continue
        return found

    # the sweep

    async def sweep(self) -> int:
        """Delete the blob files that no commit in flight and no blob row names and that are older than
        ``orphan_grace`` (module docstring); how many were deleted."""
        names = self._names
        if names is None:
            raise StorageError("filesystem: the sweep reads the metadata database, and this store has none")
        cutoff = time.time() - self.orphan_grace
        old = await asyncio.to_thread(self._blobs_older_than, cutoff)
        removed = 0
        for start in range(0, len(old), _SWEEP_BATCH):
            batch = old[start:start + _SWEEP_BATCH]
            named = await names.named_blobs(batch)
            for digest in batch:
                if digest not in named and await self._remove_orphan(names, digest, cutoff):
                    removed += 1
        if removed:
            log.info("removed blob files that no row names", extra={"count": removed})
        return removed

    def _blobs_older_than(self, cutoff: float) -> list[str]:
        """The digests of the blob files last changed before ``cutoff``; other names are left alone."""
        found = []
        top = os.path.join(self.root, "blobs")
        for algorithm, length in ALGORITHMS.items():
            for fanout in _entries(os.path.join(top, algorithm)):
                for entry in _entries(fanout.path):
                    name = entry.name
                    if len(name) != length or name[:2] != fanout.name or name.strip("0123456789abcdef"):
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                            found.append(f"{algorithm}:{name}")
        return found

    async def _remove_orphan(self, names: BlobNames, digest: str, cutoff: float) -> bool:
        """Delete one blob file if, under its exclusive lock, it is still old and still unnamed."""
        path = paths.blob_path(self.root, Digest.parse(digest))
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # a commit is deciding to keep it
            held = os.fstat(fd)
            if held.st_mtime >= cutoff or not _is_at(held, path) or await names.named_blobs([digest]):
                return False
            os.unlink(path)
            return True
        finally:
            os.close(fd)

    @staticmethod
    def _unlink_quietly(path: str) -> None:
        try:
            os.unlink(path)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise


def _entries(path: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as entries:
            return list(entries)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _is_at(held: os.stat_result, path: str) -> bool:
    """Whether the open file ``held`` is still the one at ``path`` (not removed nor replaced)."""
    try:
        current = os.stat(path)
    except FileNotFoundError:
        return False
    return (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino)


@contextlib.contextmanager
def _placed_blob(target: str) -> Iterator[int | None]:
    """The size of the blob file at ``target`` (None: there is none), share-locked against the sweep
    for the block, so that a commit that keeps it does not see it deleted under it."""
    while True:
        try:
            fd = os.open(target, os.O_RDONLY)
        except FileNotFoundError:
            yield None
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # waits out a sweep that holds it (a query's time)
            held = os.fstat(fd)
            if _is_at(held, target):
                yield held.st_size
                return
        finally:
            os.close(fd)
        # the sweep deleted it meanwhile (or a commit replaced it): look again


def _missing_dirs(directory: str) -> list[str]:
    """The folders ``os.makedirs(directory)`` would create, deepest first."""
    missing = []
    while not os.path.isdir(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return missing


async def _read_file(file: BinaryIO, start: int, length: int | None) -> AsyncIterator[bytes]:
    """Stream a byte range of an open file, reading in a worker thread."""
    try:
        if start:
            file.seek(start)
        remaining = length
        while remaining is None or remaining > 0:
            size = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
            chunk = await asyncio.to_thread(file.read, size)
            if not chunk:
                break
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
    finally:
        file.close()
