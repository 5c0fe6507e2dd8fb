"""Server configuration: defaults < YAML file < ``CARGOHOLD_*`` environment < flags."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any, Final

import yaml

#: where the embedded default keeps blobs and metadata when nothing is said
DEFAULT_DATA_DIR: Final = os.path.join(
    os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "cargohold"
)


class ConfigError(ValueError):
    """A configuration value is missing, malformed or contradictory."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: str = "127.0.0.1:5000"
    data_dir: str = DEFAULT_DATA_DIR
    tls_cert: str | None = None
    tls_key: str | None = None
    #: Distribution disables deletes by default; skopeo/crane users expect them to work
    delete_enabled: bool = True
    read_only: bool = False
    log_level: str = "info"
    workers: int = 1
    max_manifest_size: int = 4 * 1024 * 1024
    upload_max_age_seconds: float = 24 * 3600.0
    #: metadata database URL; empty means SQLite in the data directory
    database_url: str = ""
    storage_driver: str = "filesystem"

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]") or "0.0.0.0"

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def metadata_url(self) -> str:
        return self.database_url or f"sqlite://{os.path.join(self.data_dir, 'metadata.db')}"

    @property
    def blob_root(self) -> str:
        return self.data_dir

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServerConfig:
        return cls(**json.loads(text))


_FIELDS: Final = {f.name: f for f in dataclasses.fields(ServerConfig)}


def _coerce(name: str, value: Any) -> Any:
    kind = _FIELDS[name].type
    try:
        if kind == "bool":
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(value)
                return lowered in ("1", "true", "yes", "on")
            return bool(value)
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        return None if value is None else str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: cannot use {value!r}") from None


def _flatten_yaml(data: dict[str, Any]) -> dict[str, Any]:
    flat = dict(data)
    tls = flat.pop("tls", None)
    if isinstance(tls, dict):
        flat["tls_cert"], flat["tls_key"] = tls.get("cert"), tls.get("key")
    return flat


def load_config(config_file: str | None, overrides: dict[str, Any], environ: dict[str, str]) -> ServerConfig:
    values: dict[str, Any] = {}
    path = overrides.get("config") or environ.get("CARGOHOLD_CONFIG") or config_file
    if path:
        try:
            with open(path, encoding="utf-8") as file:
                data = yaml.safe_load(file) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping")
        for key, value in _flatten_yaml(data).items():
            if key not in _FIELDS:
                raise ConfigError(f"config file {path}: unknown setting {key!r}")
            values[key] = _coerce(key, value)
    for name in _FIELDS:
        env = environ.get(f"CARGOHOLD_{name.upper()}")
        if env is not None:
            values[name] = _coerce(name, env)
    for name, value in overrides.items():
        if name in _FIELDS and value is not None:
            values[name] = _coerce(name, value)
    config = ServerConfig(**values)
    _validate(config)
    return config


def _validate(config: ServerConfig) -> None:
    if ":" not in config.listen:
        raise ConfigError(f"listen must be HOST:PORT, not {config.listen!r}")
    try:
        port = config.port
    except ValueError:
        raise ConfigError(f"listen must be HOST:PORT, not {config.listen!r}") from None
    if not 0 <= port < 65536:
        raise ConfigError(f"port {port} is out of range")
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ConfigError("TLS needs both a certificate and a key")
    if config.workers < 1:
        raise ConfigError("workers must be at least 1")
    if config.log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log level must be debug, info, warning or error, not {config.log_level!r}")
