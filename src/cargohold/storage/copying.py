"""``cargohold migrate --from-sqlite DIR --copy-blobs``: an embedded registry's blob files into the S3 store.

Every blob the registry's metadata names is read from its filesystem store (``DIR/blobs/...``), hashed
as it is sent, and recorded where the S3 store finds it; one already recorded is skipped, so a run cut
short and run again completes. A file that is missing or does not hash to its digest is reported and
not copied. At the end every blob must be in the bucket at its size.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field

from ..digest import Digest
from .driver import BlobCorrupt
from .paths import blob_path
from .s3 import S3BlobStore


@dataclass(slots=True)
class BlobCopy:
    #: blobs the metadata names, copied by this run (and their bytes), found in the bucket already
    total: int = 0
    copied: int = 0
    bytes: int = 0
    present: int = 0
    #: digests whose file is missing, or whose bytes do not hash to the digest (or are not the size recorded)
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    #: other blobs not in the bucket at their size after the copy (the check at the end)
    unchecked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.corrupt or self.unchecked)


def named_blobs(data_dir: str) -> list[tuple[str, int]]:
    """The blobs ``data_dir``'s metadata names: digest and size."""
    path = os.path.join(data_dir, "metadata.db")
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as lite:
        return [(str(d), int(s)) for d, s in lite.execute("SELECT digest, size FROM blobs ORDER BY digest")]


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def copy_blobs(data_dir: str, store: S3BlobStore, blobs: list[tuple[str, int]],
                     progress: Callable[[str], None] = _say) -> BlobCopy:
    """Copy ``blobs`` from the filesystem store in ``data_dir`` into ``store``, then check them all."""
    result = BlobCopy(total=len(blobs))
    width = len(str(len(blobs)))
    for number, (text, size) in enumerate(blobs, 1):
        where = f"[{number:>{width}}/{len(blobs)}] {text}"
        digest = Digest.parse(text)
        path = blob_path(data_dir, digest)
        try:
            on_disk: int | None = os.path.getsize(path)
        except FileNotFoundError:
            on_disk = None
        if on_disk != size:
            if await store.stat(digest) == size:  # in the bucket already: the file is not needed
                result.present += 1
                continue
            if on_disk is None:
                result.missing.append(text)
                progress(f"{where}: missing: no file {path}")
            else:
                result.corrupt.append(text)
                progress(f"{where}: not copied: {path} holds {on_disk} bytes, the metadata says {size}")
            continue
        try:
            copied = await store.import_file(digest, path)
        except BlobCorrupt:
            result.corrupt.append(text)
            progress(f"{where}: not copied: {path} does not hash to its digest")
            continue
        if copied:
            result.copied += 1
            result.bytes += size
            progress(f"{where}: copied {size} bytes")
        else:
            result.present += 1
    progress(f"checking {len(blobs)} blobs in the bucket")
    reported = set(result.missing) | set(result.corrupt)
    for text, size in blobs:
        if text not in reported and await store.stat(Digest.parse(text)) != size:
            result.unchecked.append(text)
    return result
