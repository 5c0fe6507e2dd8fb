"""A schema 1 manifest made from an image manifest and its config, for clients that read nothing newer.

The payload is the one Distribution 2.8 builds (``schema1.NewConfigManifestBuilder``), byte for byte:
one ``fsLayers``/``history`` entry per entry of the config's ``history``, newest first; an entry
that the history marks ``empty_layer`` points at the gzipped empty tar and says ``throwaway``.
Each entry's v1 ``id`` is the SHA-256 of its layer digest's hex and its parent's id, so the
``id``/``parent`` chain follows from the layers alone. The newest entry's ``v1Compatibility`` is the
config itself without ``rootfs`` and ``history`` (values as written, compacted), and its ``id`` also
covers the config's bytes. JSON is written as Go's ``encoding/json`` writes it, so the same image
gives the same payload, hence the same digest, here and on Distribution.

Signing is :func:`cargohold.formats.schema1.sign`; a schema 1 digest is of the payload, so the
signature does not change it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, NamedTuple

from ..digest import Digest
from . import _json
from .descriptor import Descriptor
from .errors import ManifestError
from .mediatypes import MediaType, is_layer, is_non_distributable
from .schema1 import marshal_indent

#: gzip of an empty tar (1024 zero bytes), exactly as docker and Distribution write it
EMPTY_LAYER: Final = bytes((
    31, 139, 8, 0, 0, 9, 110, 136, 0, 255, 98, 24, 5, 163, 96, 20, 140, 88,
    0, 8, 0, 0, 255, 255, 46, 175, 181, 239, 0, 4, 0, 0,
))
EMPTY_LAYER_DIGEST: Final = Digest.of(EMPTY_LAYER)
#: the configs an image manifest may have for it to be an image (anything else is an artifact)
IMAGE_CONFIG_TYPES: Final = frozenset({MediaType.DOCKER_CONFIG, MediaType.OCI_CONFIG})

_TIME: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|([+-])(\d{2}):(\d{2}))"
)
_ZERO_TIME: Final = "0001-01-01T00:00:00Z"


class Schema1ConversionError(ManifestError):
    """The image cannot be expressed as schema 1; the message says why."""


class NotAnImage(Schema1ConversionError):
    """An artifact, not an image: there is nothing schema 1 could describe."""


class Schema1Image(NamedTuple):
    #: the manifest without signatures: what is signed, and what its digest is of
    payload: bytes
    #: its ``fsLayers`` blobs, newest first (the empty layer among them where the history has one)
    blobs: tuple[Digest, ...]


def check_convertible(config: Descriptor, layers: Sequence[Descriptor]) -> None:
    """Refuse what schema 1 has no form for: artifacts and layers fetched from elsewhere."""
    if config.media_type not in IMAGE_CONFIG_TYPES:
        raise NotAnImage(f"it is an artifact (its config is {config.media_type}): schema 1 holds images only")
    for i, layer in enumerate(layers):
        if is_non_distributable(layer.media_type):
            raise Schema1ConversionError(
                f"layers[{i}] is a foreign layer ({layer.media_type}): schema 1 cannot say where to fetch it"
            )
        if not is_layer(layer.media_type):
            raise NotAnImage(f"it is an artifact (layers[{i}] is {layer.media_type}): schema 1 holds images only")


def schema1_image(config: bytes, layers: Sequence[Descriptor], name: str, tag: str) -> Schema1Image:
    """The unsigned schema 1 manifest of an image with this config and these layers, named ``name:tag``.

    :raises Schema1ConversionError: the config's history and the layers do not fit together, or a
        value in the config has a type or form Distribution refuses.
    """
    image = _json.load_object(config, "image config", Schema1ConversionError)
    history = _history(image)
    rootfs = image.get("rootfs")
    rootfs = rootfs if isinstance(rootfs, dict) else {}
    diff_ids = rootfs.get("diff_ids")
    count = len(diff_ids) if isinstance(diff_ids, list) else 0
    if count != len(layers):
        raise Schema1ConversionError(
            f"the config's rootfs lists {count} layers, the manifest {len(layers)}"
        )
    non_empty = sum(1 for entry in history if not entry.get("empty_layer"))
    if non_empty != len(layers):
        # Distribution drops layers the history does not mention; an image without them is broken
        raise Schema1ConversionError(
            f"the config's history has {non_empty} entries with a layer, the manifest {len(layers)} layers"
        )
    base_layer = rootfs.get("base_layer")

    blobs: list[Digest] = []
    entries: list[dict[str, str]] = []
    remaining = iter(layers)
    parent = ""
    for i, entry in enumerate(history):
        empty = bool(entry.get("empty_layer"))
        blob = EMPTY_LAYER_DIGEST if empty else next(remaining).digest
        blobs.append(blob)
        if i == len(history) - 1:
            v1_id = _sha256(f"{blob.hex} {parent} ".encode() + config)
            v1 = _top_v1_compatibility(config, v1_id, parent, empty)
        else:
            v1_id = _sha256(f"{blob.hex} {parent}".encode())
            if i == 0 and isinstance(base_layer, str) and base_layer:
                parent = hashlib.sha384(base_layer.encode()).hexdigest()[:64]  # Windows base layers
            v1 = _v1_compatibility(v1_id, parent, entry, empty)
            parent = v1_id
        entries.append({"v1Compatibility": v1})
    architecture = image.get("architecture")
    manifest: dict[str, Any] = {
        "schemaVersion": 1,
        "name": name,
        "tag": tag,
        "architecture": architecture if isinstance(architecture, str) else "",
        "fsLayers": [{"blobSum": str(blob)} for blob in reversed(blobs)],
        "history": entries[::-1],
    }
    return Schema1Image(marshal_indent(manifest), tuple(reversed(blobs)))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _history(image: _json.JSONObject) -> list[_json.JSONObject]:
    entries = image.get("history")
    if entries is not None and not isinstance(entries, list):
        raise Schema1ConversionError("history: must be a list")
    if not entries:
        raise Schema1ConversionError("the image config has no history, which schema 1 is made from")
    checked = []
    for i, entry in enumerate(entries):
        where = f"history[{i}]"
        if not isinstance(entry, dict):
            raise Schema1ConversionError(f"{where}: must be an object")
        item: _json.JSONObject = entry
        for key in ("created_by", "author", "comment", "created"):
            if item.get(key) is not None and not isinstance(item[key], str):
                raise Schema1ConversionError(f"{where}.{key}: must be a string")
        if item.get("empty_layer") is not None and not isinstance(item["empty_layer"], bool):
            raise Schema1ConversionError(f"{where}.empty_layer: must be true or false")
        _go_time(item.get("created"), f"{where}.created")  # Distribution reads every entry's time
        checked.append(item)
    return checked


def _v1_compatibility(v1_id: str, parent: str, entry: _json.JSONObject, empty: bool) -> str:
    """Go's ``json.Marshal`` of Distribution's v1Compatibility struct (fields in its order, omitempty)."""
    fields = [f'"id":{_go_string(v1_id)}']
    if parent:
        fields.append(f'"parent":{_go_string(parent)}')
    if entry.get("comment"):
        fields.append(f'"comment":{_go_string(entry["comment"])}')
    fields.append(f'"created":{_go_string(_go_time(entry.get("created")))}')
    fields.append(f'"container_config":{{"Cmd":[{_go_string(entry.get("created_by") or "")}]}}')
    if entry.get("author"):
        fields.append(f'"author":{_go_string(entry["author"])}')
    if empty:
        fields.append('"throwaway":true')
    return "{" + ",".join(fields) + "}"


def _top_v1_compatibility(config: bytes, v1_id: str, parent: str, empty: bool) -> str:
    """The config as a Go map of raw values: without rootfs and history, with id, parent, throwaway; keys sorted."""
    members = _raw_members(config.decode("utf-8"))
    members.pop("rootfs", None)
    members.pop("history", None)
    members["id"] = _go_string(v1_id)
    if parent:
        members["parent"] = _go_string(parent)
    if empty:
        members["throwaway"] = "true"
    return "{" + ",".join(f"{_go_string(key)}:{_compact(members[key])}" for key in sorted(members)) + "}"


def _raw_members(text: str) -> dict[str, str]:
    """A JSON object's members as their raw text (the last of duplicate keys wins, as in Go)."""
    decoder = json.JSONDecoder()
    members: dict[str, str] = {}
    at = _skip_space(text, 0)
    if text[at : at + 1] != "{":
        raise Schema1ConversionError("the image config is not a JSON object")
    at = _skip_space(text, at + 1)
    while text[at : at + 1] != "}":
        if text[at : at + 1] != '"':
            raise Schema1ConversionError("the image config is not a JSON object")
        key, at = json.decoder.scanstring(text, at + 1)  # type: ignore[attr-defined]
        at = _skip_space(text, at)
        at = _skip_space(text, at + 1)  # past the colon (the text was validated before)
        _, end = decoder.raw_decode(text, at)
        members[key] = text[at:end]
        at = _skip_space(text, end)
        if text[at : at + 1] == ",":
            at = _skip_space(text, at + 1)
    return members


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t\r\n":
        at += 1
    return at


def _compact(raw: str) -> str:
    """Go's ``json.Compact`` with HTML escaping: insignificant whitespace out, strings kept as written."""
    out: list[str] = []
    in_string = escaped = False
    for char in raw:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            out.append(_HTML_ESCAPES.get(char, char))
        elif char == '"':
            in_string = True
            out.append(char)
        elif char not in " \t\r\n":
            out.append(char)
    return "".join(out)


_HTML_ESCAPES: Final = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_ESCAPES: Final = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", **_HTML_ESCAPES}


def _go_string(value: str) -> str:
    """A string as Go's ``encoding/json`` writes it (HTML-safe, other control characters as ``\\u00XX``)."""
    return '"' + "".join(
        _GO_ESCAPES.get(char) or (f"\\u{ord(char):04x}" if ord(char) < 0x20 else char) for char in value
    ) + '"'


def _go_time(value: object, where: str = "created") -> str:
    """An RFC 3339 time as Go reads it into a ``time.Time`` and writes it back (RFC 3339 with nanoseconds)."""
    if value is None:
        return _ZERO_TIME
    found = _TIME.fullmatch(str(value))
    if found is None:
        raise Schema1ConversionError(f"{where}: {value!r} is not an RFC 3339 time")
    year, month, day, hour, minute, second = (int(found[i]) for i in range(1, 7))
    try:
        datetime(year, month, day, hour, minute, second)
    except ValueError:
        raise Schema1ConversionError(f"{where}: {value!r} is not a valid time") from None
    fraction = (found[7] or "")[:9].rstrip("0")  # Go keeps nanoseconds, written without trailing zeros
    utc = found[8] == "Z" or found.group(10, 11) == ("00", "00")
    zone = "Z" if utc else f"{found[9]}{found[10]}:{found[11]}"
    clock = f"{found[4]}:{found[5]}:{found[6]}" + (f".{fraction}" if fraction else "")
    return f"{found[1]}-{found[2]}-{found[3]}T{clock}{zone}"
