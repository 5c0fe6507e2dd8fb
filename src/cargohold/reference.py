"""Repository names, tags and image references.

Server side: :func:`is_repository_name` and :func:`is_tag` apply the
distribution-spec grammar, and :func:`manifest_reference` reads what follows
``/manifests/`` once, as a :class:`TagRef` or a :class:`DigestRef`. Client side: :class:`Reference` parses what users
type (``[registry[:port]/]namespace/repo[:tag][@digest]``) with Docker Hub's
defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from .digest import Digest, DigestError

#: distribution-spec: <name> path components separated by "/"
NAME_PATTERN: Final = re.compile(
    r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*"
)
#: distribution-spec: <reference> as a tag
TAG_PATTERN: Final = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
#: Distribution's limit on a whole repository name (the spec lets registries set one)
NAME_MAX_LENGTH: Final = 255

DOCKER_HUB: Final = "docker.io"
DOCKER_HUB_API: Final = "registry-1.docker.io"


class ReferenceError(ValueError):
    """A repository name, tag or image reference is malformed."""


def is_repository_name(name: str) -> bool:
    return len(name) <= NAME_MAX_LENGTH and NAME_PATTERN.fullmatch(name) is not None


def is_tag(tag: str) -> bool:
    return TAG_PATTERN.fullmatch(tag) is not None


@dataclass(frozen=True, slots=True)
class TagRef:
    """A manifest reference that is a tag (not checked against the grammar: a lookup of a bad one finds nothing)."""

    tag: str

    def __str__(self) -> str:
        return self.tag


@dataclass(frozen=True, slots=True)
class DigestRef:
    """A manifest reference that is a digest."""

    digest: Digest

    def __str__(self) -> str:
        return str(self.digest)


#: what follows ``/manifests/`` in a URL
ManifestReference = TagRef | DigestRef


def manifest_reference(text: str) -> ManifestReference:
    """A tag, or a digest when it has a ``:`` (which no tag has).

    :raises DigestError: it has a ``:`` but is not a valid digest.
    """
    return DigestRef(Digest.parse(text)) if ":" in text else TagRef(text)


@dataclass(frozen=True, slots=True)
class Reference:
    """An image reference: registry host, repository, and a tag and/or digest."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str, *, default_registry: str = DOCKER_HUB) -> Reference:
        scheme, sep, without = text.partition("://")
        if sep:
            raise ReferenceError(f"{text!r}: a reference has no {scheme}:// prefix; write {without!r}")
        rest = text
        digest: Digest | None = None
        if "@" in rest:
            rest, _, digest_text = rest.partition("@")
            try:
                digest = Digest.parse(digest_text)
            except DigestError as exc:
                raise ReferenceError(f"{text!r}: {exc}") from None
        first, sep, remainder = rest.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
            registry, path = first, remainder
            if not path:
                raise ReferenceError(f"{text!r} names a registry but no repository: write {first}/REPOSITORY[:TAG]")
        else:
            registry, path = default_registry, rest
            name = rest.partition(":")[0]
            if not sep and (name == "localhost" or "." in name):
                # "127.0.0.1:5000" is a registry, not the image library/127.0.0.1:5000 of Docker Hub
                raise ReferenceError(f"{text!r} names a registry but no repository: write {rest}/REPOSITORY[:TAG]")
        tag: str | None = None
        last_slash = path.rfind("/")
        colon = path.rfind(":")
        if colon > last_slash:
            path, tag = path[:colon], path[colon + 1 :]
            if not is_tag(tag):
                raise ReferenceError(f"{text!r}: invalid tag {tag!r}")
        if registry == DOCKER_HUB and "/" not in path:
            path = f"library/{path}"
        if not is_repository_name(path):
            lowercase = " (repository names are lowercase)" if is_repository_name(path.lower()) else ""
            raise ReferenceError(f"{text!r}: invalid repository name {path!r}{lowercase}")
        if tag is None and digest is None:
            tag = "latest"
        return cls(registry, path, tag, digest)

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest if known, else the tag."""
        if self.digest is not None:
            return str(self.digest)
        assert self.tag is not None
        return self.tag

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag, None)

    def with_digest(self, digest: Digest) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text
