"""What a client takes in answer to a manifest GET: the types its Accept header names, and its platform."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Final

from ..formats import MediaType

_WILDCARDS: Final = frozenset({"*/*", "application/*"})
#: the platform a legacy docker client names in its User-Agent ("... os/linux arch/amd64 ...")
_UA_OS: Final = re.compile(r"(?:^|\s)os/([\w.-]+)")
_UA_ARCH: Final = re.compile(r"(?:^|\s)arch/([\w.-]+)")


@dataclass(frozen=True, slots=True)
class Accepts:
    """A GET's content negotiation. Called with a media type: whether the client takes it."""

    named: frozenset[str]
    #: no Accept header, or a wildcard in it
    anything: bool
    #: (os, architecture) from the User-Agent of a docker client that says it; None if it does not
    platform: tuple[str, str] | None = None

    def __call__(self, media_type: str) -> bool:
        return self.anything or self.names(media_type)

    def names(self, media_type: str) -> bool:
        """The Accept header names this type; schema 1 clients name one of its two names and take either."""
        return media_type in self.named or (
            media_type == MediaType.DOCKER_SCHEMA1_SIGNED and MediaType.DOCKER_SCHEMA1 in self.named
        )


@functools.lru_cache(maxsize=1024)  # a registry sees few distinct Accept and User-Agent headers
def parse_accepts(accept: str | None, user_agent: str | None = None) -> Accepts:
    named = frozenset(
        part.split(";", 1)[0].strip().lower() for part in (accept or "").split(",")
    ) - {""}
    os_name = _UA_OS.search(user_agent or "")
    arch = _UA_ARCH.search(user_agent or "")
    platform = (os_name[1], arch[1]) if os_name and arch else None
    return Accepts(named - _WILDCARDS, not named or bool(named & _WILDCARDS), platform)
