"""Server configuration: defaults < YAML file < ``CARGOHOLD_*`` environment < flags.

The configuration is a tree of sections (:class:`Section` subclasses, validated by msgspec); adding a
section is adding a class and a field of :class:`ServerConfig`. A key is written ``section.key`` in
messages and ``section: {key: ...}`` in YAML. The first, flat form of the file (``listen``,
``auth_token_lifetime``, ``tls: {cert, key}``, ...) is still accepted: :data:`FLAT_KEYS` maps each
flat name to its place, and also names its ``CARGOHOLD_*`` variable and its ``serve`` flag.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

import msgspec
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


class Section(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A part of the configuration; ``__post_init__`` raises :class:`ConfigError` for a bad combination."""


class TlsSection(Section, frozen=True):
    cert: str | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ConfigError("TLS needs both a certificate and a key")


class ServerSection(Section, frozen=True):
    listen: str = "127.0.0.1:5000"
    #: where blobs, metadata and keys live unless their own section says otherwise
    data_dir: str = DEFAULT_DATA_DIR
    tls: TlsSection = msgspec.field(default_factory=TlsSection)
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

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]") or "0.0.0.0"

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    def __post_init__(self) -> None:
        if ":" not in self.listen:
            raise ConfigError(f"listen must be HOST:PORT, not {self.listen!r}")
        try:
            port = self.port
        except ValueError:
            raise ConfigError(f"listen must be HOST:PORT, not {self.listen!r}") from None
        if not 0 <= port < 65536:
            raise ConfigError(f"port {port} is out of range")
        if self.workers < 1:
            raise ConfigError("workers must be at least 1")
        if self.shutdown_timeout_seconds <= 0:
            raise ConfigError("shutdown_timeout_seconds must be more than 0")
        if self.shutdown_delay_seconds < 0:
            raise ConfigError("shutdown_delay_seconds must not be negative")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"log level must be debug, info, warning or error, not {self.log_level!r}")


class DriverOptions(Section, frozen=True):
    """A storage driver's section, named as the driver."""

    def options(self, data_dir: str) -> dict[str, Any]:
        """What the driver's opener takes (``storage.factory``); blank paths may default into ``data_dir``."""
        return msgspec.structs.asdict(self)


class FilesystemStorage(DriverOptions, frozen=True):
    #: empty: the data directory
    root: str = ""

    def options(self, data_dir: str) -> dict[str, Any]:
        return {"root": self.root or data_dir}


class StorageSection(Section, frozen=True):
    """``driver`` names the blob store; its options are the section of the same name (``filesystem: {root}``)."""

    #: a name of ``storage.factory.DRIVERS``: filesystem, or memory (lost on exit; one worker only)
    driver: str = "filesystem"
    filesystem: FilesystemStorage = msgspec.field(default_factory=FilesystemStorage)

    def driver_options(self, data_dir: str) -> dict[str, Any]:
        """The chosen driver's options, as its opener takes them (none for a driver without a section)."""
        section = getattr(self, self.driver) if self.driver in self.__struct_fields__ else None
        return section.options(data_dir) if isinstance(section, DriverOptions) else {}


class DatabaseSection(Section, frozen=True):
    #: metadata database URL; empty means SQLite in the data directory
    url: str = ""


class AuthSection(Section, frozen=True):
    #: "none": anyone may do anything (the embedded default, for a first try on localhost);
    #: "htpasswd": Distribution's basic auth, every user of the file may do everything;
    #: "token": users, robots, teams and permissions, with Distribution's bearer-token protocol
    mode: str = "none"
    #: the htpasswd file (bcrypt entries) for mode htpasswd
    htpasswd: str = ""
    #: the token endpoint's URL in challenges; empty: this server's /auth/token, as the client reached it
    token_realm: str = ""
    #: the "service" of challenges and the audience of tokens
    service: str = "cargohold"
    #: the issuer of the tokens cargohold signs
    issuer: str = "cargohold"
    #: PEM private key (EC P-256 or RSA) tokens are signed with; empty: generated in <data_dir>/auth
    token_key: str = ""
    #: seconds an access token lives; short, because it cannot be revoked (the spec's minimum is 60)
    token_lifetime: int = 300
    #: seconds a refresh token (docker's identity token) lives
    refresh_lifetime: int = 30 * 24 * 3600
    #: an external token service whose tokens are accepted too: its issuer ...
    external_issuer: str = ""
    #: ... and its keys: PEM files of certificates or public keys, comma-separated ...
    external_keys: str = ""
    #: ... and/or its JWKS: a file, or an http(s) URL read at start
    external_jwks: str = ""
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

    def __post_init__(self) -> None:
        if self.mode not in ("none", "htpasswd", "token"):
            raise ConfigError(f"auth must be none, htpasswd or token, not {self.mode!r}")
        if self.mode == "htpasswd" and not self.htpasswd:
            raise ConfigError("auth=htpasswd needs an htpasswd file (auth.htpasswd)")
        if (self.external_keys or self.external_jwks) and not self.external_issuer:
            raise ConfigError("external token keys need the external issuer's name (auth.external_issuer)")
        if self.external_issuer and not (self.external_keys or self.external_jwks):
            raise ConfigError("an external issuer needs its keys (auth.external_keys or auth.external_jwks)")
        if self.external_issuer and self.external_issuer == self.issuer:
            raise ConfigError("the external issuer must not have cargohold's own issuer name")
        if not 60 <= self.token_lifetime <= 24 * 3600:
            raise ConfigError("auth.token_lifetime must be between 60 seconds and a day")
        if not 4 <= self.password_cost <= 31:
            raise ConfigError("auth.password_cost must be between 4 and 31 (bcrypt's range)")
        if self.login_window_seconds <= 0:
            raise ConfigError("auth.login_window_seconds must be positive")
        for name in ("login_failures_per_account_address", "login_failures_per_address",
                     "login_failures_per_account", "login_delay_max_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"auth.{name} must not be negative (0 turns the limit off)")
        if self.login_delay_max_seconds > 60:
            raise ConfigError("auth.login_delay_max_seconds must be at most 60: the delay holds a request open")


class Schema1Section(Section, frozen=True):
    #: PEM private key (EC or RSA) that signs the schema 1 manifests generated for legacy clients
    #: (Distribution's name); empty: generated once in <data_dir>/auth beside the token key
    signingkeyfile: str = ""


class CompatibilitySection(Section, frozen=True):
    """Serving clients older than the formats stored, as Distribution's ``compatibility`` section."""

    schema1: Schema1Section = msgspec.field(default_factory=Schema1Section)


class AuditSection(Section, frozen=True):
    """The audit log: what every change, login and (batched) pull left behind."""

    #: entries older than this many days are purged by the periodic jobs; 0 keeps them forever
    retention_days: float = 90.0
    #: record every blob GET too (manifest GETs always are); off by default: a pull reads many blobs
    record_blob_pulls: bool = False

    def __post_init__(self) -> None:
        if self.retention_days < 0:
            raise ConfigError("audit.retention_days must not be negative (0 keeps entries forever)")


class ServerConfig(Section, frozen=True):
    server: ServerSection = msgspec.field(default_factory=ServerSection)
    storage: StorageSection = msgspec.field(default_factory=StorageSection)
    database: DatabaseSection = msgspec.field(default_factory=DatabaseSection)
    auth: AuthSection = msgspec.field(default_factory=AuthSection)
    compatibility: CompatibilitySection = msgspec.field(default_factory=CompatibilitySection)
    audit: AuditSection = msgspec.field(default_factory=AuditSection)

    def __post_init__(self) -> None:
        if self.storage.driver == "memory" and self.server.workers > 1:
            raise ConfigError(
                f"storage.driver memory keeps blobs inside one process, but server.workers is"
                f" {self.server.workers}: each worker would have a store of its own; set server.workers to 1"
            )

    @property
    def data_dir(self) -> str:
        return self.server.data_dir

    @property
    def metadata_url(self) -> str:
        return self.database.url or f"sqlite://{os.path.join(self.data_dir, 'metadata.db')}"

    @property
    def token_key_path(self) -> str:
        return self.auth.token_key or os.path.join(self.data_dir, "auth", "token-key.pem")

    @property
    def token_cert_path(self) -> str:
        """The token key's self-signed certificate, for Distribution's ``auth.token.rootcertbundle``."""
        return os.path.join(self.data_dir, "auth", "token-cert.pem")

    @property
    def schema1_key_path(self) -> str:
        """The key generated schema 1 manifests are signed with: one for every worker and every restart."""
        return self.compatibility.schema1.signingkeyfile or os.path.join(self.data_dir, "auth", "schema1-key.pem")

    def to_json(self) -> str:
        return msgspec.json.encode(self).decode()

    @classmethod
    def from_json(cls, text: str) -> ServerConfig:
        return msgspec.json.decode(text, type=cls)


#: the flat keys of the first file format -> their place; each is also the name of its ``CARGOHOLD_*``
#: variable (upper case) and of its ``serve`` flag's value. A key not listed here has the variable
#: ``CARGOHOLD_SECTION_KEY`` (``CARGOHOLD_STORAGE_FILESYSTEM_ROOT``).
FLAT_KEYS: Final[dict[str, tuple[str, ...]]] = {
    **{key: ("server", key) for key in (
        "listen", "data_dir", "delete_enabled", "read_only", "log_level", "workers", "max_manifest_size",
        "upload_max_age_seconds", "shutdown_timeout_seconds", "shutdown_delay_seconds")},
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
    """What msgspec's lax conversion does not do: yes/no/on/off, padded numbers, numbers for text."""
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
                 "str | null": "a string", "object": "a mapping"}
_PROBLEM: Final = re.compile(r"^(?:Expected `(?P<kind>[^`]+)`.*?|Object contains unknown field `(?P<unknown>[^`]+)`)"
                             r"(?: - at `\$(?P<at>[^`]*)`)?$")


def _build(settings: _Tree) -> ServerConfig:
    try:
        return msgspec.convert(settings.values, ServerConfig, strict=False)
    except msgspec.ValidationError as exc:
        if isinstance(exc.__cause__, ConfigError):  # a section's own rule
            raise exc.__cause__ from None
        found = _PROBLEM.match(str(exc))
        if found is None:
            raise ConfigError(str(exc)) from None
        path = tuple(filter(None, (found["at"] or "").split(".")))
        if found["unknown"]:
            path = (*path, found["unknown"])
            raise ConfigError(f"{_origin(settings, path)}: unknown setting {'.'.join(path)!r}") from None
        value: Any = settings.values
        for name in path:
            value = value[name]
        kind = _KINDS.get(found["kind"], found["kind"])
        raise ConfigError(f"{'.'.join(path)}: cannot use {value!r} (must be {kind}; "
                          f"from {_origin(settings, path)})") from None


def _origin(settings: _Tree, path: tuple[str, ...]) -> str:
    """Where the setting at ``path``, or the first below it, came from."""
    return next((o for p, o in settings.origins.items() if p[:len(path)] == path), "configuration")
