"""Strict JSON decoding and typed field access for the format parsers.

Every accessor takes ``where`` (the path of the containing value, such as
``"layers[2]"``) so that an error names the exact field at fault. Decoding is
stricter than :func:`json.loads`: the text must be UTF-8, duplicate keys are
refused (two parsers reading the same bytes must not see different values),
the non-standard ``NaN``/``Infinity`` constants are refused, and so is
nesting deeper than :data:`cargohold.jsontext.MAX_DEPTH`.
"""

from __future__ import annotations

from typing import Any, NoReturn

from .. import jsontext
from .errors import ManifestError

JSONObject = dict[str, Any]

#: The largest size a descriptor may declare: Go registries and our metadata
#: store hold sizes as signed 64-bit integers.
MAX_SIZE = 2**63 - 1
#: The most entries a manifest's ``layers``, ``manifests`` or ``fsLayers`` may
#: hold: Docker and containerd stack at most 127 layers, and every entry costs
#: a lookup when the manifest is pushed.
MAX_DESCRIPTORS = 10_000


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> JSONObject:
    obj: JSONObject = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def load_object(data: bytes, what: str, error: type[ManifestError] = ManifestError) -> JSONObject:
    """Decode ``data`` as one UTF-8 JSON object, raising ``error`` naming ``what`` otherwise."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} is not UTF-8: {exc}") from None
    try:
        value = jsontext.loads(
            text,
            object_pairs_hook=_object_without_duplicates,
            parse_constant=_refuse_constant,
        )
    except ValueError as exc:  # json.JSONDecodeError is a ValueError, as are ours and JSONTooDeep
        raise error(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise error(f"{what} must be a JSON object, not {json_type(value)}")
    return value


def json_type(value: object) -> str:
    """The JSON name of ``value``'s type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def field(where: str, key: str) -> str:
    """The path of ``key`` inside ``where`` (``"" + "config"`` is just ``"config"``)."""
    return f"{where}.{key}" if where else key


def expect_object(value: object, where: str) -> JSONObject:
    if not isinstance(value, dict):
        raise ManifestError(f"{where}: must be an object, not {json_type(value)}")
    return value


def expect_list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ManifestError(f"{where}: must be an array, not {json_type(value)}")
    return value


def bounded_list(value: object, where: str) -> list[Any]:
    """An array of at most :data:`MAX_DESCRIPTORS` entries."""
    items = expect_list(value, where)
    if len(items) > MAX_DESCRIPTORS:
        raise ManifestError(f"{where}: {len(items)} entries, more than the {MAX_DESCRIPTORS} allowed")
    return items


def expect_str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ManifestError(f"{where}: must be a string, not {json_type(value)}")
    return value


def expect_int(value: object, where: str) -> int:
    # bool is a subclass of int in Python; JSON true is not a number.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ManifestError(f"{where}: must be an integer, not {json_type(value)}")
    return value


def required(obj: JSONObject, key: str, where: str) -> Any:
    if key not in obj:
        raise ManifestError(f"{field(where, key)}: required field is missing")
    return obj[key]


def required_str(obj: JSONObject, key: str, where: str) -> str:
    return expect_str(required(obj, key, where), field(where, key))


def optional_str(obj: JSONObject, key: str, where: str) -> str | None:
    value = obj.get(key)
    return None if value is None else expect_str(value, field(where, key))


def string_list(obj: JSONObject, key: str, where: str) -> tuple[str, ...]:
    """An optional array of strings (absent or null reads as empty)."""
    value = obj.get(key)
    if value is None:
        return ()
    path = field(where, key)
    return tuple(expect_str(item, f"{path}[{i}]") for i, item in enumerate(expect_list(value, path)))


def string_map(obj: JSONObject, key: str, where: str) -> dict[str, str]:
    """An optional string-to-string map (absent or null reads as empty)."""
    value = obj.get(key)
    if value is None:
        return {}
    path = field(where, key)
    result: dict[str, str] = {}
    for name, text in expect_object(value, path).items():
        result[name] = expect_str(text, f"{path}[{name!r}]")
    return result
