"""Content digests: ``algorithm:hex`` as the OCI image spec defines them.

Only sha256 and sha512 are registered algorithms; anything else is refused
with :class:`DigestError` so that callers can map it to DIGEST_INVALID or
UNSUPPORTED as the situation requires.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final

#: hex length of each registered algorithm's digest
ALGORITHMS: Final[dict[str, int]] = {"sha256": 64, "sha512": 128}

# image-spec grammar: algorithm-component(s) ":" encoded; we then insist on a
# registered algorithm with lower-case hex of the right length.
_GRAMMAR: Final = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_LOWER_HEX: Final = re.compile(r"[0-9a-f]+")


class DigestError(ValueError):
    """A string is not a valid digest of a registered algorithm."""


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        if not _GRAMMAR.fullmatch(text):
            raise DigestError(f"invalid digest {text!r}")
        algorithm, _, encoded = text.partition(":")
        length = ALGORITHMS.get(algorithm)
        if length is None:
            raise DigestError(f"unsupported digest algorithm {algorithm!r}")
        if len(encoded) != length or _LOWER_HEX.fullmatch(encoded) is None:
            raise DigestError(f"invalid {algorithm} digest {text!r}")
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of ``data``; for bytes already in memory (manifests)."""
        if algorithm not in ALGORITHMS:
            raise DigestError(f"unsupported digest algorithm {algorithm!r}")
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"
