"""What every part of the service shares: its options, the write guards, and reading names and digests."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

from ..digest import ALGORITHMS, Digest, DigestError
from ..errcodes import DigestInvalid, NameInvalid, NameUnknown, Unsupported
from ..metadata.store import MetadataStore
from ..reference import ManifestReference, is_repository_name, manifest_reference
from .uploads import DEFAULT_ALGORITHM

#: Distribution's default; manifests are held in memory and in the database
DEFAULT_MAX_MANIFEST_SIZE: Final = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RegistryOptions:
    delete_enabled: bool = True
    read_only: bool = False
    max_manifest_size: int = DEFAULT_MAX_MANIFEST_SIZE
    #: abandoned uploads are purged after this long without progress
    upload_max_age_seconds: float = 24 * 3600.0


class Guard:
    """The options' refusals of writes and deletes."""

    def __init__(self, options: RegistryOptions):
        self.options = options

    @property
    def writable(self) -> bool:
        """Whether anything may be written (a pull-through cache stores what it fetches only then)."""
        return not self.options.read_only

    def check_writable(self) -> None:
        if not self.writable:
            raise Unsupported("the registry is in read-only mode")

    def check_deletable(self) -> None:
        self.check_writable()
        if not self.options.delete_enabled:
            raise Unsupported("deletes are disabled on this registry")


def parse_digest(text: str) -> Digest:
    try:
        return Digest.parse(text)
    except DigestError as exc:
        raise DigestInvalid(str(exc)) from None


@functools.lru_cache(maxsize=4096)  # pulls ask for the same few tags and digests over and over
def parse_reference(text: str) -> ManifestReference:
    """What follows ``/manifests/``: a tag, or a digest (DIGEST_INVALID if it is a malformed one)."""
    try:
        return manifest_reference(text)
    except DigestError as exc:
        raise DigestInvalid(str(exc)) from None


def parse_algorithm(text: str | None) -> str:
    """The ``digest-algorithm`` of an upload: sha256 unless it names another supported one."""
    if text is None:
        return DEFAULT_ALGORITHM
    if text not in ALGORITHMS:
        raise DigestInvalid(f"unsupported digest algorithm {text!r}", detail={"algorithm": text})
    return text


def check_name(name: str) -> None:
    if not is_repository_name(name):
        raise NameInvalid(f"invalid repository name {name!r}", detail={"name": name})


def unknown_repository(name: str) -> NameUnknown:
    return NameUnknown(f"repository {name!r} is not known", detail={"name": name})


async def repository_id(meta: MetadataStore, name: str) -> int:
    """The repository's id; NAME_UNKNOWN if it does not exist."""
    found = await meta.repository_id(name)
    if found is None:
        raise unknown_repository(name)
    return found
