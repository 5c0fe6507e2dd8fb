"""Reading the configuration: defaults < YAML file < ``CARGOHOLD_*`` environment < flags, with errors that
name the key, the value and where it came from."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, TypeVar, get_origin

import msgspec
import yaml

from .base import ConfigError, Section
from .sections import ServerConfig

FLAT_KEYS: Final[dict[str, tuple[str, ...]]] = {
    **{key: ("server", key) for key in (
        "listen", "data_dir", "delete_enabled", "read_only", "log_level", "workers", "max_manifest_size",
        "upload_max_age_seconds", "shutdown_timeout_seconds", "shutdown_delay_seconds", "public_url")},
    "tls_cert": ("server", "tls", "cert"),
    "tls_key": ("server", "tls", "key"),
    "storage_driver": ("storage", "driver"),
    "database_url": ("database", "url"),
    "auth": ("auth", "mode"),
    **{f"auth_{key}": ("auth", key) for key in (
        "htpasswd", "token_realm", "service", "issuer", "token_key", "token_lifetime", "refresh_lifetime",
        "external_issuer", "external_keys", "external_jwks")},
    **{key: ("auth", key) for key in (
        "password_cost", "login_failures_per_account_address", "login_failures_per_address",
        "login_failures_per_account", "login_delay_max_seconds", "login_window_seconds")},
}


def _leaves(cls: type[Section], prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every setting of ``cls``: its path and its type."""
    for field in msgspec.structs.fields(cls):
        path = (*prefix, field.name)
        if isinstance(field.type, type) and issubclass(field.type, Section):
            yield from _leaves(field.type, path)
        else:
            yield path, field.type


#: setting path -> its type
_TYPES: Final = dict(_leaves(ServerConfig))
#: the path of every section (("server",), ("server", "tls"), ...)
_SECTIONS: Final = {path[:i] for path in _TYPES for i in range(1, len(path))}
#: setting path -> its ``CARGOHOLD_*`` variable
_ENV_NAMES: Final = {
    path: "CARGOHOLD_" + next((flat for flat, p in FLAT_KEYS.items() if p == path), "_".join(path)).upper()
    for path in _TYPES
}
_WORDS: Final = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False,
                 "off": False}


def _loosen(kind: Any, value: Any) -> Any:
    """What msgspec's lax conversion does not do: yes/no/on/off, padded numbers, numbers for text, and a
    list or mapping written as YAML in a variable or flag (``CARGOHOLD_NOTIFICATIONS_ENDPOINTS``)."""
    if isinstance(value, str) and get_origin(kind) in (list, dict):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    if isinstance(value, str) and kind is not str and kind != (str | None):
        value = value.strip()
        return _WORDS.get(value.lower(), value) if kind is bool else value
    if kind in (str, str | None) and isinstance(value, int | float):
        return str(value)
    return value


class _Tree:
    """The settings given so far, nested as the sections are, and where each came from; a later one wins."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.origins: dict[tuple[str, ...], str] = {}

    def put(self, path: tuple[str, ...], value: Any, origin: str) -> None:
        node = self.values
        for name in path[:-1]:
            child = node.setdefault(name, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{origin}: {'.'.join(path[:-1])} must be a mapping, not {child!r}")
            node = child
        node[path[-1]] = _loosen(_TYPES.get(path), value)
        self.origins[path] = origin

    def put_file(self, data: Mapping[Any, Any], origin: str) -> None:
        for key, value in data.items():
            name = str(key)
            if name == "tls":  # the flat form's only section
                self._put_any(("server", "tls"), value, origin)
            elif name in FLAT_KEYS and not (name == "auth" and isinstance(value, dict | None)):
                self._put_once(FLAT_KEYS[name], value, origin)
            else:
                self._put_any((name,), value, origin)

    def _put_any(self, path: tuple[str, ...], value: Any, origin: str) -> None:
        if isinstance(value, dict) and path not in _TYPES:
            for key, inner in value.items():
                self._put_any((*path, str(key)), inner, origin)
        elif not (value is None and path in _SECTIONS):  # "server:" with every key commented out
            self._put_once(path, value, origin)

    def _put_once(self, path: tuple[str, ...], value: Any, origin: str) -> None:
        if path in self.origins:
            raise ConfigError(f"{origin}: {'.'.join(path)} is set twice (flat and in its section)")
        self.put(path, value, origin)


def load_config(config_file: str | None, overrides: dict[str, Any], environ: Mapping[str, str]) -> ServerConfig:
    """``overrides`` are the flags, by flat name (``auth_htpasswd``) or dotted path (``auth.htpasswd``)."""
    settings = _Tree()
    path = overrides.get("config") or environ.get("CARGOHOLD_CONFIG") or config_file
    if path:
        settings.put_file(_read_yaml(path), f"config file {path}")
    for where, name in _ENV_NAMES.items():
        if name in environ:
            settings.put(where, environ[name], name)
    for name, value in overrides.items():
        where = FLAT_KEYS.get(name) or tuple(name.split("."))
        if value is not None and where in _TYPES:
            settings.put(where, value, "command line")
    return _build(settings)


def _read_yaml(path: str) -> Mapping[Any, Any]:
    try:
        with open(path, encoding="utf-8") as file:
            data = yaml.safe_load(file) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping")
    return data


#: msgspec's words for a type -> ours
_KINDS: Final = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
                 "str | null": "a string", "object": "a mapping",
                 "float | str": "a duration such as 5s, or seconds"}
_PROBLEM: Final = re.compile(r"^(?:Expected `(?P<kind>[^`]+)`.*?|Object contains unknown field `(?P<unknown>[^`]+)`"
                             r"|Object missing required field `(?P<missing>[^`]+)`)"
                             r"(?: - at `\$(?P<at>[^`]*)`)?$")


def _path(at: str) -> tuple[str | int, ...]:
    """msgspec's ``.notifications.endpoints[0].url`` as ("notifications", "endpoints", 0, "url")."""
    return tuple(int(index) if index else name for name, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", at))


def _dotted(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


_S = TypeVar("_S", bound="Section")


def _build(settings: _Tree) -> ServerConfig:
    return convert(settings.values, ServerConfig, lambda path: _origin(settings, path))


def convert(values: Any, cls: type[_S], origin: Callable[[tuple[str | int, ...]], str] | None = None,
            prefix: str = "") -> _S:
    """``values`` as ``cls``; :class:`ConfigError` names the bad key (after ``prefix``), its value and,
    given ``origin``, where it came from."""
    try:
        return msgspec.convert(values, cls, strict=False)
    except msgspec.ValidationError as exc:
        if isinstance(exc.__cause__, ConfigError):  # a section's own rule
            raise exc.__cause__ from None
        found = _PROBLEM.match(str(exc))
        if found is None:
            raise ConfigError(f"{prefix}{exc}") from None
        path = _path(found["at"] or "")

        def source(path: tuple[str | int, ...]) -> str:
            return origin(path) if origin is not None else ""

        if found["unknown"]:
            path = (*path, found["unknown"])
            where = f"{source(path)}: " if origin is not None else ""
            raise ConfigError(f"{where}unknown setting {prefix}{_dotted(path)!r}") from None
        if found["missing"]:
            path = (*path, found["missing"])
            where = f" (from {source(path)})" if origin is not None else ""
            raise ConfigError(f"{prefix}{_dotted(path)} is required{where}") from None
        value: Any = values
        for name in path:
            value = value[name]
        kind = _KINDS.get(found["kind"], found["kind"])
        where = f"; from {source(path)}" if origin is not None else ""
        raise ConfigError(f"{prefix}{_dotted(path)}: cannot use {value!r} (must be {kind}{where})") from None


def _origin(settings: _Tree, path: tuple[str | int, ...]) -> str:
    """Where the setting at ``path`` (or the first below it, or the list or mapping it is in) came from."""
    return next((o for p, o in settings.origins.items() if p[:len(path)] == path or path[:len(p)] == p),
                "configuration")
