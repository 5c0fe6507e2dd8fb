"""Layer blobs as tar streams: compression detected from the first bytes, decompressed in bounded steps.

A layer is gzip (one or several members), zstd (one or several frames) or an
uncompressed tar. Whatever the compression, at most :data:`INFLATE_STEP`
uncompressed bytes are produced per step, so a small blob that inflates to
terabytes (a "bomb") costs time, never memory. The same gzip reader serves the
schema 1 conversion's diff IDs (:mod:`.convert`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, Literal, Protocol, cast

import zstandard

from ..digest import Digest
from ..formats import MediaType
from .errors import ClientError

Compression = Literal["gzip", "zstd", "none"]

#: most uncompressed bytes produced per decompression step: bounds memory on a bomb
INFLATE_STEP: Final = 4 * 1024 * 1024
#: compressed bytes per zstd step (see :class:`ZstdInflater`)
ZSTD_SLICE: Final = 1024
#: read size from layer files
READ_SIZE: Final = 1024 * 1024
GZIP_MAGIC: Final = b"\x1f\x8b"
ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
#: compressions a layer may not use (docker load knows them, registries and runtimes do not)
_REFUSED: Final = {b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz"}
#: bytes needed to tell the compressions apart
HEAD_SIZE: Final = 6

#: containerd's media type for an uncompressed layer in a Docker schema 2 manifest
DOCKER_LAYER_UNCOMPRESSED: Final = "application/vnd.docker.image.rootfs.diff.tar"

_OCI_TYPES: Final[dict[Compression, str]] = {
    "gzip": MediaType.OCI_LAYER_GZIP,
    "zstd": MediaType.OCI_LAYER_ZSTD,
    "none": MediaType.OCI_LAYER,
}
_DOCKER_TYPES: Final[dict[Compression, str]] = {"gzip": MediaType.DOCKER_LAYER, "none": DOCKER_LAYER_UNCOMPRESSED}


def detect(head: bytes, what: str = "layer") -> Compression:
    """The compression of a blob starting with ``head`` (at least :data:`HEAD_SIZE` bytes, unless shorter)."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    for magic, name in _REFUSED.items():
        if head.startswith(magic):
            raise ClientError(f"{what} is {name}-compressed; layers are gzip, zstd or uncompressed tars")
    return "none"


def media_type(compression: Compression, docker: bool) -> str:
    """The layer media type for ``compression`` in an OCI or a Docker schema 2 manifest."""
    if not docker:
        return _OCI_TYPES[compression]
    if compression not in _DOCKER_TYPES:
        raise ClientError(
            "a Docker schema 2 image has no zstd layer type: compress with gzip, or convert the image to OCI"
        )
    return _DOCKER_TYPES[compression]


class GzipInflater:
    """Inflates a gzip stream fed in chunks, members one after another, in bounded steps."""

    def __init__(self, what: str = "layer") -> None:
        self.what = what
        self._inflater: Any = zlib.decompressobj(16 + zlib.MAX_WBITS)  # zlib.Decompress; its type is private

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The uncompressed bytes ``data`` completes, in pieces of at most :data:`INFLATE_STEP`."""
        while True:
            if self._inflater.eof:
                data = self._inflater.unused_data + data
                if not data:
                    return
                if not data.startswith(GZIP_MAGIC[: len(data)]):
                    raise ClientError(f"{self.what} has data after its gzip stream")
                self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                out = self._inflater.decompress(data, INFLATE_STEP)
            except zlib.error as exc:
                raise ClientError(f"{self.what} is not valid gzip: {exc}") from None
            if out:
                yield out
            data = self._inflater.unconsumed_tail
            if not data and len(out) < INFLATE_STEP and not self._inflater.eof:
                return

    def finish(self) -> None:
        """Raise if the stream was cut short."""
        if not self._inflater.eof:
            raise ClientError(f"{self.what}'s gzip stream is truncated")


class ZstdInflater:
    """Decompresses a zstd stream fed in chunks, frames one after another.

    zstandard's incremental decompressor cannot cap its output, so input goes in
    slices of :data:`ZSTD_SLICE` bytes: a slice holds at most 256 run-length blocks
    of 128 KiB, so one step produces at most 32 MiB. (Its stream reader caps the
    output but does not tell a truncated frame from a complete one.)
    """

    def __init__(self, what: str = "layer") -> None:
        self.what = what
        self._context = zstandard.ZstdDecompressor()
        self._frame = self._context.decompressobj()
        self._started = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        view = memoryview(data)
        for start in range(0, len(view), ZSTD_SLICE):
            piece = bytes(view[start : start + ZSTD_SLICE])
            while piece:
                if self._frame.eof:
                    self._frame = self._context.decompressobj()
                try:
                    out = self._frame.decompress(piece)
                except zstandard.ZstdError as exc:
                    raise ClientError(f"{self.what} is not valid zstd: {exc}") from None
                self._started = True
                if out:
                    yield out
                piece = self._frame.unused_data if self._frame.eof else b""

    def finish(self) -> None:
        """Raise if the last frame was cut short."""
        if not self._started or not self._frame.eof:
            raise ClientError(f"{self.what}'s zstd stream is truncated")


class ChunkReader(io.RawIOBase):
    """A readable binary file over an iterator of byte chunks (for tarfile and zstandard)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def _peek(chunks: Iterable[bytes]) -> tuple[bytes, Iterator[bytes]]:
    """The first :data:`HEAD_SIZE` bytes of ``chunks`` and an iterator over all of them again."""
    source = iter(chunks)
    taken: list[bytes] = []
    size = 0
    while size < HEAD_SIZE:
        chunk = next(source, None)
        if chunk is None:
            break
        taken.append(chunk)
        size += len(chunk)

    def again() -> Iterator[bytes]:
        yield from taken
        yield from source

    return b"".join(taken)[:HEAD_SIZE], again()


def decompressed(chunks: Iterable[bytes], what: str = "layer") -> Iterator[bytes]:
    """The uncompressed bytes of a layer blob given as ``chunks``, whatever its compression."""
    head, source = _peek(chunks)
    compression = detect(head, what)
    if compression == "none":
        yield from source
    elif compression == "gzip":
        inflater = GzipInflater(what)
        for chunk in source:
            yield from inflater.feed(chunk)
        inflater.finish()
    else:
        zstd = ZstdInflater(what)
        for chunk in source:
            yield from zstd.feed(chunk)
        zstd.finish()


def file_chunks(path: Path) -> Iterator[bytes]:
    """A file's bytes in chunks of :data:`READ_SIZE`."""
    with path.open("rb") as file:
        while chunk := file.read(READ_SIZE):
            yield chunk


def compression_of(path: Path) -> Compression:
    with path.open("rb") as file:
        return detect(file.read(HEAD_SIZE), str(path))


class HashingReader(io.RawIOBase):
    """Reads through ``source`` and hashes every byte read (the diff ID of a tar stream)."""

    def __init__(self, source: Iterable[bytes]) -> None:
        self._reader = ChunkReader(source)
        self.hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self._reader.readinto(buffer)
        self.hash.update(memoryview(buffer)[:count])
        return count

    def drain(self) -> Digest:
        """Read to the end (a tar's padding after its last block counts too); the sha256 of it all."""
        buffer = bytearray(READ_SIZE)
        while self.readinto(buffer):
            pass
        return Digest("sha256", self.hash.hexdigest())


def open_tar(chunks: Iterable[bytes], what: str = "layer") -> tarfile.TarFile:
    """A layer blob's tar, read as a stream (members in order, each readable once, as it passes)."""
    try:
        return tarfile.open(fileobj=ChunkReader(decompressed(chunks, what)), mode="r|")
    except tarfile.TarError as exc:
        raise ClientError(f"{what} is not a tar: {exc}") from None


def members(tar: tarfile.TarFile, what: str = "layer") -> Iterator[tarfile.TarInfo]:
    """The tar's members, a malformed header reported as a :class:`ClientError`."""
    while True:
        try:
            member = tar.next()
        except tarfile.TarError as exc:
            raise ClientError(f"{what} is not a valid tar: {exc}") from None
        if member is None:
            return
        yield member


def check_tar(path: Path) -> tuple[Compression, Digest]:
    """A layer file's compression and diff ID (sha256 of its tar), after checking that it is a tar."""
    what = str(path)
    compression = compression_of(path)
    reader = HashingReader(decompressed(file_chunks(path), what))
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            count = sum(1 for _ in members(tar, what))
    except tarfile.TarError as exc:
        raise ClientError(f"{what} is not a tar: {exc}") from None
    diff_id = reader.drain()
    if count == 0:
        raise ClientError(f"{what} is not a tar: it has no entries")
    return compression, diff_id


class _Sink(Protocol):
    def write(self, data: Any, /) -> Any: ...


class HashingWriter(io.RawIOBase):
    """Passes writes on to ``target``, hashing and counting them."""

    def __init__(self, target: _Sink) -> None:
        self.target = target
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.hash.update(data)
        self.target.write(data)
        count = len(data) if isinstance(data, bytes) else memoryview(data).nbytes
        self.size += count
        return count

    @property
    def digest(self) -> Digest:
        return Digest("sha256", self.hash.hexdigest())


#: gzip's level for layers written here: crane's (BestSpeed); on a Debian root filesystem 3x faster
#: than level 6 for 8% more bytes
GZIP_LEVEL: Final = 1
#: zstd's default level
ZSTD_LEVEL: Final = 3


@dataclass(frozen=True, slots=True)
class WrittenLayer:
    """A layer blob written to a file: its digest and size, and the diff ID of the tar inside."""

    path: Path
    compression: Compression
    digest: Digest
    size: int
    diff_id: Digest


class LayerWriter:
    """A tar stream written to ``path`` compressed as asked; both sides hashed as they pass.

    Write the tar to :attr:`tar`, then :meth:`close` for the blob's digest, size and diff ID.
    """

    def __init__(self, path: Path, compression: Compression) -> None:
        self.path = path
        self.compression = compression
        self._file = path.open("wb")
        self._blob = HashingWriter(self._file)
        self._compressor: gzip.GzipFile | zstandard.ZstdCompressionWriter | None = None
        if compression == "gzip":
            self._compressor = gzip.GzipFile(fileobj=self._blob, mode="wb", compresslevel=GZIP_LEVEL, mtime=0)
        elif compression == "zstd":
            self._compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(
                cast(IO[bytes], self._blob), closefd=False
            )
        self.tar = HashingWriter(self._compressor if self._compressor is not None else self._blob)

    def close(self) -> WrittenLayer:
        if self._compressor is not None:
            self._compressor.close()
        self._file.close()
        return WrittenLayer(self.path, self.compression, self._blob.digest, self._blob.size, self.tar.digest)

    def abort(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


def compress_file(source: Path, target: Path, compression: Compression) -> WrittenLayer:
    """An uncompressed tar file written to ``target`` compressed as asked, in chunks."""
    writer = LayerWriter(target, compression)
    try:
        for chunk in file_chunks(source):
            writer.tar.write(chunk)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def file_digest(path: Path) -> tuple[Digest, int]:
    """A file's sha256 and size, read in chunks."""
    hasher = hashlib.sha256()
    size = 0
    for chunk in file_chunks(path):
        hasher.update(chunk)
        size += len(chunk)
    return Digest("sha256", hasher.hexdigest()), size
