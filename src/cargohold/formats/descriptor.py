"""Descriptors: the typed pointer (media type, digest, size) that manifests are made of.

:meth:`Descriptor.from_json` validates strictly and names the offending field
(``layers[2].size: ...``), because a registry that accepts a malformed
descriptor stores a manifest that no client can pull.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..digest import Digest, DigestError
from . import _json
from .errors import ManifestError


@dataclass(frozen=True, slots=True)
class Platform:
    """The platform an index entry's image runs on (``linux/arm64/v8``)."""

    architecture: str
    os: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, obj: object, where: str) -> Platform:
        """Read an OCI ``platform`` object; ``where`` prefixes error messages."""
        data = _json.expect_object(obj, where)
        return cls(
            architecture=_json.required_str(data, "architecture", where),
            os=_json.required_str(data, "os", where),
            variant=_json.optional_str(data, "variant", where),
            os_version=_json.optional_str(data, "os.version", where),
            os_features=_json.string_list(data, "os.features", where),
        )

    def to_json(self) -> dict[str, Any]:
        """The OCI JSON form, without empty optional fields."""
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version is not None:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant is not None:
            out["variant"] = self.variant
        return out

    def __str__(self) -> str:
        parts = [self.os, self.architecture]
        if self.variant:
            parts.append(self.variant)
        return "/".join(parts)


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor.

    ``size`` is the exact byte length of the content; the one exception is a
    schema 1 layer reference, which carries no size and uses -1 (see
    :attr:`cargohold.formats.Manifest.references`). ``annotations`` is None
    rather than empty when the JSON had none, so that :meth:`to_json` gives
    back what it was given.
    """

    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] | None = None
    artifact_type: str | None = None
    platform: Platform | None = None

    @classmethod
    def from_json(cls, obj: object, where: str) -> Descriptor:
        """Validate and read a descriptor object found at ``where`` in a manifest.

        :raises ManifestError: naming the field, e.g. ``"layers[2].digest: ..."``.
        """
        data = _json.expect_object(obj, where)
        media_type = _json.required_str(data, "mediaType", where)
        digest_text = _json.required_str(data, "digest", where)
        try:
            digest = Digest.parse(digest_text)
        except DigestError as exc:
            raise ManifestError(f"{where}.digest: {exc}") from None
        size = _json.expect_int(_json.required(data, "size", where), f"{where}.size")
        if size < 0:
            raise ManifestError(f"{where}.size: must not be negative, got {size}")
        if size > _json.MAX_SIZE:
            raise ManifestError(f"{where}.size: {size} exceeds the largest supported size")
        annotations = _json.string_map(data, "annotations", where)
        platform = data.get("platform")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            urls=_json.string_list(data, "urls", where),
            annotations=annotations or None,
            artifact_type=_json.optional_str(data, "artifactType", where),
            platform=None if platform is None else Platform.from_json(platform, f"{where}.platform"),
        )

    def to_json(self) -> dict[str, Any]:
        """The OCI JSON form, without empty optional fields."""
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.artifact_type is not None:
            out["artifactType"] = self.artifact_type
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        return out
