"""A digest hasher whose state can be saved and restored.

Chunked uploads span requests, worker processes and server restarts, and each
byte must be hashed once, when it arrives. :mod:`hashlib` cannot export its
state, so we drive OpenSSL's SHA-256/SHA-512 contexts through ctypes: the
context is a plain struct (112 or 216 bytes) that we save with the upload's
offset. ctypes releases the GIL during the call, so hashing in a worker thread
runs beside the event loop, at hashlib's speed (measured ~1.5 GB/s here).

Where libcrypto's low-level API is missing, the hasher falls back to hashlib
and :meth:`ResumableHasher.state` returns ``None``; the upload service then
re-reads the bytes written so far when it resumes (correct, just slower).

A saved state starts with a header naming its format version, algorithm and
layout (:data:`STATE_FORMAT`): the context is OpenSSL's struct in the machine's
byte order, so a state saved by another build or machine, or by an older
cargohold without the header, is refused with :class:`UnreadableHashState`
instead of being resumed into a wrong digest.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import sys
from typing import Final

from ..digest import Digest

_CTX_SIZE: Final = {"sha256": 112, "sha512": 216}
_DIGEST_SIZE: Final = {"sha256": 32, "sha512": 64}
_PREFIX: Final = {"sha256": "SHA256", "sha512": "SHA512"}

#: first bytes of every saved state; the number is the header's version
_MAGIC: Final = b"cargohold-hash-state/1"
#: how the context bytes are laid out: OpenSSL's SHA*_CTX struct, native byte order
STATE_FORMAT: Final = f"openssl-ctx-{sys.byteorder}"


class UnreadableHashState(ValueError):
    """A saved hash state of another version, algorithm, layout or size: hash the bytes again instead."""


def _header(algorithm: str) -> bytes:
    return b"%s %s %s\n" % (_MAGIC, algorithm.encode(), STATE_FORMAT.encode())


def _load_libcrypto() -> ctypes.CDLL | None:
    for name in ("libcrypto.so.3", ctypes.util.find_library("crypto")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            for prefix in _PREFIX.values():
                for fn in ("_Init", "_Update", "_Final"):
                    getattr(lib, prefix + fn)
        except (OSError, AttributeError):
            continue
        for prefix in _PREFIX.values():
            getattr(lib, prefix + "_Init").argtypes = [ctypes.c_void_p]
            getattr(lib, prefix + "_Update").argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
            getattr(lib, prefix + "_Final").argtypes = [ctypes.c_char_p, ctypes.c_void_p]
        return lib
    return None


_LIB: Final = _load_libcrypto()


class ResumableHasher:
    """Incremental sha256/sha512 with an exportable state (see module doc)."""

    __slots__ = ("algorithm", "_ctx", "_fallback")

    def __init__(self, algorithm: str = "sha256", state: bytes | None = None):
        if algorithm not in _CTX_SIZE:
            raise ValueError(f"unsupported digest algorithm {algorithm!r}")
        self.algorithm = algorithm
        self._fallback: hashlib._Hash | None = None
        self._ctx: ctypes.Array[ctypes.c_char] | None = None
        if _LIB is None:
            if state is not None:
                raise UnreadableHashState("saved hash state cannot be restored without libcrypto")
            self._fallback = hashlib.new(algorithm)
        elif state is not None:
            header = _header(algorithm)
            if not state.startswith(header):
                found = state[: state.find(b"\n")] if state.startswith(_MAGIC) else b"no header"
                raise UnreadableHashState(f"saved hash state is {found!r}, not {header.strip()!r}")
            if len(state) != len(header) + _CTX_SIZE[algorithm]:
                raise UnreadableHashState("saved hash state has the wrong size")
            self._ctx = ctypes.create_string_buffer(state[len(header) :], _CTX_SIZE[algorithm])
        else:
            self._ctx = ctypes.create_string_buffer(_CTX_SIZE[algorithm])
            getattr(_LIB, _PREFIX[algorithm] + "_Init")(self._ctx)

    @staticmethod
    def resumable() -> bool:
        """Whether states can be saved on this machine."""
        return _LIB is not None

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self._fallback is not None:
            self._fallback.update(data)
            return
        if not isinstance(data, bytes):
            try:  # a reused buffer: read where it is, not copied into bytes first
                data = (ctypes.c_char * len(data)).from_buffer(data)  # type: ignore[assignment]
            except TypeError:  # read-only
                data = bytes(data)
        getattr(_LIB, _PREFIX[self.algorithm] + "_Update")(self._ctx, data, len(data))

    def state(self) -> bytes | None:
        """The context as bytes (after the versioned header), to pass back to the constructor later."""
        return None if self._ctx is None else _header(self.algorithm) + self._ctx.raw

    def digest(self) -> Digest:
        """The digest so far; the hasher can keep going afterwards."""
        if self._fallback is not None:
            return Digest(self.algorithm, self._fallback.copy().hexdigest())
        assert self._ctx is not None
        ctx = ctypes.create_string_buffer(self._ctx.raw, len(self._ctx))
        out = ctypes.create_string_buffer(_DIGEST_SIZE[self.algorithm])
        getattr(_LIB, _PREFIX[self.algorithm] + "_Final")(out, ctx)
        return Digest(self.algorithm, out.raw.hex())
