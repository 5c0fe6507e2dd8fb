"""Manifests: exact bytes in, a frozen typed view out.

:func:`parse_manifest` decides the media type, hands the decoded JSON to the
parser registered for it, and returns a :class:`Manifest` that keeps ``raw``
exactly as given. Nothing here re-serializes: the registry stores and serves
``raw``, and the digest is computed from bytes, never from a re-encoding.

Media types handled: OCI image manifest and index, Docker schema 2 manifest
and manifest list, and Docker schema 1 (signed, or unsigned when explicitly
so labelled). Schema 1 signatures are checked by :mod:`.schema1`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from ..digest import Digest, DigestError
from . import _json
from .descriptor import Descriptor
from .errors import ManifestError, ManifestSignatureError
from .mediatypes import MANIFEST_MEDIA_TYPES, MediaType, is_image_manifest, is_non_distributable
from .mediatypes import is_index as _is_index_type

__all__ = ["Manifest", "ManifestError", "ManifestSignatureError", "parse_manifest"]

# Content-Type values that say nothing about which manifest this is. The
# schema 1 spec allows "application/json"; old clients send it for anything.
_GENERIC_CONTENT_TYPES: Final = frozenset({"", "application/json"})


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed manifest of any supported media type.

    ``payload`` is the byte string ``digest`` covers: ``raw`` itself, except
    for a signed schema 1 manifest, where it is ``raw`` without its signatures
    (the digest Distribution, docker and skopeo use, stable across re-signing).
    ``layers`` holds schema 1's ``fsLayers`` in manifest order (top layer first)
    as :attr:`MediaType.DOCKER_LAYER` descriptors of unknown size (-1).
    """

    media_type: str
    raw: bytes = field(repr=False)
    digest: Digest
    payload: bytes = field(repr=False)
    schema_version: int
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    # schema 1 only
    name: str | None = None
    tag: str | None = None
    architecture: str | None = None

    @property
    def is_index(self) -> bool:
        """An OCI index or Docker manifest list."""
        return _is_index_type(self.media_type)

    @property
    def references(self) -> tuple[Descriptor, ...]:
        """What the repository must already hold before this manifest is accepted.

        Children for an index; config and layers for an image, except
        non-distributable (foreign) layers, which clients fetch from their
        ``urls``; ``fsLayers`` for schema 1. ``subject`` is never included: the
        referrers API lets a referrer arrive before its subject. Each digest
        appears once, at its first position.
        """
        if self.is_index:
            candidates: tuple[Descriptor, ...] = self.manifests
        elif self.config is None:
            candidates = self.layers
        else:
            candidates = (self.config, *self.layers)
        seen: set[Digest] = set()
        result = []
        for descriptor in candidates:
            if is_non_distributable(descriptor.media_type) or descriptor.digest in seen:
                continue
            seen.add(descriptor.digest)
            result.append(descriptor)
        return tuple(result)

    @property
    def referrer_artifact_type(self) -> str | None:
        """The artifact type the referrers API reports for this manifest.

        ``artifactType`` if set, else the config's media type for an image
        manifest, else None.
        """
        if self.artifact_type is not None:
            return self.artifact_type
        if is_image_manifest(self.media_type) and self.config is not None:
            return self.config.media_type
        return None

    def descriptor(self) -> Descriptor:
        """A descriptor of this manifest, as an index or referrers list would hold it."""
        return Descriptor(
            media_type=self.media_type,
            digest=self.digest,
            size=len(self.payload),
            annotations=dict(self.annotations) or None,
            artifact_type=self.referrer_artifact_type,
        )


def parse_manifest(raw: bytes, content_type: str | None = None) -> Manifest:
    """Validate ``raw`` as a manifest and return its typed view.

    The media type is the manifest's ``mediaType`` field, which must agree
    with ``content_type`` when both are given (parameters such as
    ``; charset=utf-8`` are ignored, and so is a generic ``application/json``).
    Without the field, a manifest ``content_type`` decides; failing that the
    shape does: ``schemaVersion`` 1 is signed schema 1, ``manifests`` an OCI
    index, ``config`` and ``layers`` an OCI manifest.

    :raises ManifestSignatureError: a schema 1 signature is missing or wrong.
    :raises ManifestError: anything else malformed, naming the field at fault.
    """
    obj = _json.load_object(raw, "manifest")
    media_type = _media_type(obj, content_type)
    return _PARSERS[media_type](raw, obj, media_type)


def _media_type(obj: _json.JSONObject, content_type: str | None) -> str:
    declared = _json.optional_str(obj, "mediaType", "")
    header = (content_type or "").split(";", 1)[0].strip().lower()
    if header in _GENERIC_CONTENT_TYPES:
        header = ""
    if declared is not None:
        if header and header != declared:
            raise ManifestError(f"mediaType {declared!r} does not match Content-Type {header!r}")
        media_type = declared
    elif header in MANIFEST_MEDIA_TYPES:
        media_type = header
    else:
        media_type = _infer_media_type(obj)
    if media_type not in MANIFEST_MEDIA_TYPES:
        raise ManifestError(f"unsupported manifest media type {media_type!r}")
    return str(media_type)  # a plain str, whichever branch found it


def _infer_media_type(obj: _json.JSONObject) -> str:
    if obj.get("schemaVersion") == 1:
        return MediaType.DOCKER_SCHEMA1_SIGNED
    if "manifests" in obj:
        return MediaType.OCI_INDEX
    if "config" in obj and "layers" in obj:
        return MediaType.OCI_MANIFEST
    raise ManifestError("cannot tell the manifest's media type: no mediaType field or manifest Content-Type")


# -- one parser per media type -----------------------------------------------

_Parser = Callable[[bytes, _json.JSONObject, str], Manifest]


def _parse_image(raw: bytes, obj: _json.JSONObject, media_type: str) -> Manifest:
    """OCI image manifest or Docker schema 2: a config and a list of layers."""
    _check_schema_version(obj, 2)
    oci = media_type == MediaType.OCI_MANIFEST
    if not oci:
        _require_declared(obj, media_type)
    # An image must not look like an index too (CVE-2021-41190): a reader
    # guessing the type from the shape could otherwise see something else.
    _refuse_fields(obj, ("manifests",), "an image manifest")
    return Manifest(
        media_type=media_type,
        raw=raw,
        digest=Digest.of(raw),
        payload=raw,
        schema_version=2,
        config=Descriptor.from_json(_json.required(obj, "config", ""), "config"),
        layers=_descriptors(obj, "layers"),
        subject=_subject(obj) if oci else None,
        artifact_type=_json.optional_str(obj, "artifactType", "") if oci else None,
        annotations=_json.string_map(obj, "annotations", "") if oci else {},
    )


def _parse_index(raw: bytes, obj: _json.JSONObject, media_type: str) -> Manifest:
    """OCI index or Docker manifest list: descriptors of other manifests."""
    _check_schema_version(obj, 2)
    oci = media_type == MediaType.OCI_INDEX
    if not oci:
        _require_declared(obj, media_type)
    _refuse_fields(obj, ("config", "layers"), "an index")
    manifests = _descriptors(obj, "manifests")
    if not oci:
        for i, child in enumerate(manifests):
            if child.platform is None:
                raise ManifestError(f"manifests[{i}].platform: required field is missing")
    return Manifest(
        media_type=media_type,
        raw=raw,
        digest=Digest.of(raw),
        payload=raw,
        schema_version=2,
        manifests=manifests,
        subject=_subject(obj) if oci else None,
        artifact_type=_json.optional_str(obj, "artifactType", "") if oci else None,
        annotations=_json.string_map(obj, "annotations", "") if oci else {},
    )


def _parse_schema1(raw: bytes, obj: _json.JSONObject, media_type: str) -> Manifest:
    """Docker schema 1: verify the signatures, then read the signed payload.

    Only the explicitly unsigned media type may come without ``signatures``;
    a manifest that has them is verified and reported as the signed type
    whatever it was labelled.
    """
    # imported here: the signature code loads ``cryptography`` (~25 ms), which only schema 1 needs
    from .schema1 import SIGNATURES_KEY, verify_signatures

    if SIGNATURES_KEY in obj:
        payload = verify_signatures(raw)
        media_type = str(MediaType.DOCKER_SCHEMA1_SIGNED)
        obj = _json.load_object(payload, "signed payload")
    elif media_type == MediaType.DOCKER_SCHEMA1_SIGNED:
        raise ManifestSignatureError("schema 1 manifest has no signatures")
    else:
        payload = raw
    _check_schema_version(obj, 1)
    fs_layers = _json.bounded_list(_json.required(obj, "fsLayers", ""), "fsLayers")
    history = _json.expect_list(_json.required(obj, "history", ""), "history")
    if len(history) != len(fs_layers):
        raise ManifestError(f"history has {len(history)} entries but fsLayers has {len(fs_layers)}")
    layers = []
    for i, (layer, entry) in enumerate(zip(fs_layers, history, strict=True)):
        where = f"fsLayers[{i}]"
        blob_sum = _json.required_str(_json.expect_object(layer, where), "blobSum", where)
        try:
            digest = Digest.parse(blob_sum)
        except DigestError as exc:
            raise ManifestError(f"{where}.blobSum: {exc}") from None
        layers.append(Descriptor(MediaType.DOCKER_LAYER, digest, -1))
        _json.required_str(_json.expect_object(entry, f"history[{i}]"), "v1Compatibility", f"history[{i}]")
    return Manifest(
        media_type=media_type,
        raw=raw,
        digest=Digest.of(payload),
        payload=payload,
        schema_version=1,
        layers=tuple(layers),
        name=_json.required_str(obj, "name", ""),
        tag=_json.required_str(obj, "tag", ""),
        architecture=_json.optional_str(obj, "architecture", ""),
    )


_PARSERS: Final[dict[str, _Parser]] = {
    MediaType.OCI_MANIFEST: _parse_image,
    MediaType.DOCKER_MANIFEST: _parse_image,
    MediaType.OCI_INDEX: _parse_index,
    MediaType.DOCKER_MANIFEST_LIST: _parse_index,
    MediaType.DOCKER_SCHEMA1: _parse_schema1,
    MediaType.DOCKER_SCHEMA1_SIGNED: _parse_schema1,
}


# -- shared field readers ----------------------------------------------------


def _check_schema_version(obj: _json.JSONObject, expected: int) -> None:
    version = _json.expect_int(_json.required(obj, "schemaVersion", ""), "schemaVersion")
    if version != expected:
        raise ManifestError(f"schemaVersion: must be {expected}, got {version}")


def _require_declared(obj: _json.JSONObject, media_type: str) -> None:
    """Docker's v2 formats must name themselves; Distribution refuses them otherwise."""
    if "mediaType" not in obj:
        raise ManifestError(f"mediaType: required field is missing (expected {media_type!r})")


def _refuse_fields(obj: _json.JSONObject, keys: tuple[str, ...], what: str) -> None:
    for key in keys:
        if key in obj:
            raise ManifestError(f"{key}: not allowed in {what}")


def _descriptors(obj: _json.JSONObject, key: str) -> tuple[Descriptor, ...]:
    items = _json.bounded_list(_json.required(obj, key, ""), key)
    return tuple(Descriptor.from_json(item, f"{key}[{i}]") for i, item in enumerate(items))


def _subject(obj: _json.JSONObject) -> Descriptor | None:
    value = obj.get("subject")
    return None if value is None else Descriptor.from_json(value, "subject")
