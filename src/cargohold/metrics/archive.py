"""Folding the files of workers that ended into one archive file per type.

Every worker process writes files of its own (``counter_<pid>.db``...), and granian starts a new process for
each worker that ends: a long-lived server would have a scrape read thousands of files. Before each scrape,
the counter and histogram files of processes that are gone are added into ``counter_archive.db`` and
``histogram_archive.db`` and deleted; their live gauges' files (``livesum``: only living processes count)
are deleted. Scrapes read under a shared lock and folding takes it exclusively, so that no scrape sees a
file both folded and not yet deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
from collections.abc import Iterator
from typing import Final

from prometheus_client.mmap_dict import MmapedDict

ARCHIVED: Final = "archive"
_LOCK: Final = "archive.lock"
#: the types whose values add up over processes
_FOLDED: Final = ("counter", "histogram")


def _pid(filename: str) -> int | None:
    """The process a metric file belongs to (``gauge_livesum_12.db``, ``counter_12.db``); None for others."""
    stem = os.path.basename(filename).removesuffix(".db")
    tail = stem.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's: not one of ours, but alive
        return True
    return True


@contextlib.contextmanager
def _locked(path: str, exclusive: bool) -> Iterator[bool]:
    """The directory's lock; for ``exclusive``, whether it was had without waiting (another folds now)."""
    fd = os.open(os.path.join(path, _LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if exclusive:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
        else:
            fcntl.flock(fd, fcntl.LOCK_SH)
        yield True
    finally:
        os.close(fd)


def fold_dead(path: str) -> int:
    """Fold the files of processes that are gone into the archive; how many files went."""
    dead: list[str] = []
    for filename in glob.glob(os.path.join(path, "*.db")):
        pid = _pid(filename)
        if pid is not None and not _alive(pid):
            dead.append(filename)
    if not dead:
        return 0
    with _locked(path, exclusive=True) as had:
        if not had:
            return 0
        for kind in _FOLDED:
            files = [f for f in dead if os.path.basename(f).startswith(kind + "_") and os.path.exists(f)]
            if files:
                _fold(os.path.join(path, f"{kind}_{ARCHIVED}.db"), files)
        for filename in dead:
            if os.path.basename(filename).startswith("gauge_live"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(filename)
    return len(dead)


def _fold(archive_path: str, files: list[str]) -> None:
    archive = MmapedDict(archive_path)  # type: ignore[no-untyped-call]
    try:
        for filename in files:
            for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(filename):  # type: ignore[no-untyped-call]
                total, _ = archive.read_value(key)  # type: ignore[no-untyped-call]
                archive.write_value(key, total + value, timestamp)  # type: ignore[no-untyped-call]
            os.remove(filename)
    finally:
        archive.close()  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def reading(path: str) -> Iterator[None]:
    """Hold off folding while a scrape reads the files."""
    with _locked(path, exclusive=False):
        yield
