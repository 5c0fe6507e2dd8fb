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


def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


#: one worker process per CPU, up to 8. Measured on 2 CPUs (docs/benchmarks.md): 2 workers
#: served 36% more manifest GETs than 1, blob transfers unchanged; each worker costs ~50 MB.
#: Past 8 is unmeasured, and SQLite writes go one at a time whatever the number.
DEFAULT_WORKERS: Final = max(1, min(_usable_cpus(), 8))


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
    workers: int = DEFAULT_WORKERS
    max_manifest_size: int = 4 * 1024 * 1024
    upload_max_age_seconds: float = 24 * 3600.0
    #: on SIGTERM, requests in flight get this long to finish; then the workers still running are
    #: killed, so a stop always ends (docker stop's grace period is 10 s, systemd's 90 s)
    shutdown_timeout_seconds: float = 30.0
    #: on SIGTERM, keep accepting requests this long while /readyz answers 503, so that a load
    #: balancer stops sending before the port closes (Traefik's requestAcceptGraceTimeout); 0: close at once
    shutdown_delay_seconds: float = 0.0
    #: metadata database URL; empty means SQLite in the data directory
    database_url: str = ""
    storage_driver: str = "filesystem"
    #: "none": anyone may do anything (the embedded default, for a first try on localhost);
    #: "htpasswd": Distribution's basic auth, every user of the file may do everything;
    #: "token": users, robots, teams and permissions, with Distribution's bearer-token protocol
    auth: str = "none"
    #: the htpasswd file (bcrypt entries) for auth=htpasswd
    auth_htpasswd: str = ""
    #: the token endpoint's URL in challenges; empty: this server's /auth/token, as the client reached it
    auth_token_realm: str = ""
    #: the "service" of challenges and the audience of tokens
    auth_service: str = "cargohold"
    #: the issuer of the tokens cargohold signs
    auth_issuer: str = "cargohold"
    #: PEM private key (EC P-256 or RSA) tokens are signed with; empty: generated in <data_dir>/auth
    auth_token_key: str = ""
    #: seconds an access token lives; short, because it cannot be revoked (the spec's minimum is 60)
    auth_token_lifetime: int = 300
    #: seconds a refresh token (docker's identity token) lives
    auth_refresh_lifetime: int = 30 * 24 * 3600
    #: an external token service whose tokens are accepted too: its issuer ...
    auth_external_issuer: str = ""
    #: ... and its keys: PEM files of certificates or public keys, comma-separated ...
    auth_external_keys: str = ""
    #: ... and/or its JWKS: a file, or an http(s) URL read at start
    auth_external_jwks: str = ""
    #: bcrypt cost of new passwords (12: about 0.25 s per check, OWASP's advice)
    password_cost: int = 12
    #: failed logins within login_window_seconds before 429: for one name from one address, and from one
    #: address; then, for one name from all addresses, before its logins are slowed (never refused) by a
    #: delay doubling per failure up to login_delay_max_seconds (0 turns a limit off)
    login_failures_per_account_address: int = 5
    login_failures_per_address: int = 20
    login_failures_per_account: int = 10
    login_delay_max_seconds: float = 4.0
    login_window_seconds: float = 300.0

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

    @property
    def token_key_path(self) -> str:
        return self.auth_token_key or os.path.join(self.data_dir, "auth", "token-key.pem")

    @property
    def token_cert_path(self) -> str:
        """The token key's self-signed certificate, for Distribution's ``auth.token.rootcertbundle``."""
        return os.path.join(self.data_dir, "auth", "token-cert.pem")

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
    if config.shutdown_timeout_seconds <= 0:
        raise ConfigError("shutdown_timeout_seconds must be more than 0")
    if config.shutdown_delay_seconds < 0:
        raise ConfigError("shutdown_delay_seconds must not be negative")
    _validate_auth(config)
    if config.log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log level must be debug, info, warning or error, not {config.log_level!r}")


def _validate_auth(config: ServerConfig) -> None:
    if config.auth not in ("none", "htpasswd", "token"):
        raise ConfigError(f"auth must be none, htpasswd or token, not {config.auth!r}")
    if config.auth == "htpasswd" and not config.auth_htpasswd:
        raise ConfigError("auth=htpasswd needs an htpasswd file (auth_htpasswd)")
    if (config.auth_external_keys or config.auth_external_jwks) and not config.auth_external_issuer:
        raise ConfigError("external token keys need the external issuer's name (auth_external_issuer)")
    if config.auth_external_issuer and not (config.auth_external_keys or config.auth_external_jwks):
        raise ConfigError("an external issuer needs its keys (auth_external_keys or auth_external_jwks)")
    if config.auth_external_issuer and config.auth_external_issuer == config.auth_issuer:
        raise ConfigError("the external issuer must not have cargohold's own issuer name")
    if not 60 <= config.auth_token_lifetime <= 24 * 3600:
        raise ConfigError("auth_token_lifetime must be between 60 seconds and a day")
    if not 4 <= config.password_cost <= 31:
        raise ConfigError("password_cost must be between 4 and 31 (bcrypt's range)")
    if config.login_window_seconds <= 0:
        raise ConfigError("login_window_seconds must be positive")
    for name in ("login_failures_per_account_address", "login_failures_per_address", "login_failures_per_account",
                 "login_delay_max_seconds"):
        if getattr(config, name) < 0:
            raise ConfigError(f"{name} must not be negative (0 turns the limit off)")
    if config.login_delay_max_seconds > 60:
        raise ConfigError("login_delay_max_seconds must be at most 60: the delay holds a request open")
