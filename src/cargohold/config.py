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
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, TypeVar, get_origin
from urllib.parse import urlsplit

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
    #: the registry's address as clients reach it (``https://registry.example.com``), for the links it sends
    #: elsewhere (webhook payloads), as Distribution's ``http.host``; empty: the Host a request named
    public_url: str = ""

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
        if self.public_url and not is_http_url(self.public_url):
            raise ConfigError(f"server.public_url: cannot use {self.public_url!r} (must be an http or https URL)")


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


_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                          "h": 3600.0}


def parse_duration(value: float | str) -> float:
    """Seconds, from a number of seconds or a Go duration (``500ms``, ``5s``, ``1m30s``); ValueError if neither."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"not a duration: {value!r}")
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


#: what an endpoint may ask for in ``actions`` and ``ignore.actions``: Distribution's four words, each
#: standing for cargohold's actions of that verb, or one of cargohold's own (``manifest.push``)
WEBHOOK_ACTIONS: Final = {
    "push": ("manifest.push", "blob.push"),
    "pull": ("manifest.pull", "blob.pull"),
    "delete": ("manifest.delete", "tag.delete", "blob.delete"),
    "mount": ("blob.mount",),
}
_OWN_ACTIONS: Final = frozenset(action for actions in WEBHOOK_ACTIONS.values() for action in actions)
_ENDPOINT_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class WebhookIgnore(Section, frozen=True):
    """Distribution's ``ignore``: events of these target media types or actions are not sent."""

    mediatypes: list[str] = msgspec.field(default_factory=list)
    actions: list[str] = msgspec.field(default_factory=list)


class WebhookEndpoint(Section, frozen=True):
    """One receiver of events: Distribution's endpoint keys, then cargohold's own.

    The same settings come from ``notifications.endpoints`` and from endpoints added at run time;
    :meth:`check` is the one place their values are checked.
    """

    name: str
    url: str
    #: sent with every request: a header name -> its values (Distribution's form), or one value
    headers: dict[str, list[str] | str] = msgspec.field(default_factory=dict)
    #: the most one attempt may take, connecting, sending and reading the answer: a Go duration or seconds
    timeout: float | str = "5s"
    #: Distribution's failures before it backs off: accepted so its configuration loads, and not used
    #: (cargohold backs off after every failure, see ``backoff``)
    threshold: int = 0
    #: the wait after the first failed attempt; it doubles with every further one, up to
    #: ``notifications.backoff_max``, each with +-20% jitter
    backoff: float | str = "1s"
    ignoredmediatypes: list[str] = msgspec.field(default_factory=list)
    ignore: WebhookIgnore = msgspec.field(default_factory=WebhookIgnore)
    disabled: bool = False
    #: glob patterns of the repositories whose events are sent (``team/*``; ``*`` also matches ``/``); none: all
    repositories: list[str] = msgspec.field(default_factory=list)
    #: the actions sent (see :data:`WEBHOOK_ACTIONS`); Distribution sends all four
    actions: list[str] = msgspec.field(default_factory=lambda: ["push", "pull", "delete", "mount"])
    #: ``distribution`` (its event envelope) or ``quay`` (a ``repo_push`` for each tag-setting manifest push)
    format: str = "distribution"
    #: signs each body: ``X-Cargohold-Signature: sha256=<hex HMAC-SHA256 of the body with this key>``
    secret: str = ""
    #: attempts before a delivery is marked dead (it stays listed, and may be redelivered)
    max_attempts: int = 12
    #: the most events in one Distribution envelope: deliveries waiting (a burst, a second of pulls, a
    #: receiver back up) go together, in event order; 1 sends each alone. The quay format sends one each.
    batch_size: int = 100

    def check(self, prefix: str = "") -> None:
        """Raise :class:`ConfigError` naming the first bad key (after ``prefix``) and its value."""

        def bad(key: str, value: Any, rule: str) -> ConfigError:
            return ConfigError(f"{prefix}{key}: cannot use {value!r} ({rule})")

        if not _ENDPOINT_NAME.fullmatch(self.name):
            raise bad("name", self.name, "must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter"
                      " or digit")
        if self.name == "deliveries":  # /admin/v1/webhooks/deliveries lists them
            raise bad("name", self.name, "is reserved")
        if not is_http_url(self.url):
            raise bad("url", self.url, "must be an http or https URL")
        for key in ("timeout", "backoff"):
            try:
                seconds = parse_duration(getattr(self, key))
            except ValueError:
                raise bad(key, getattr(self, key), "must be a duration such as 500ms, 5s or 1m, or seconds") from None
            if not 0 < seconds <= 3600:
                raise bad(key, getattr(self, key), "must be more than 0 and at most an hour")
        for key, values in (("actions", self.actions), ("ignore.actions", self.ignore.actions)):
            for action in values:
                if action not in WEBHOOK_ACTIONS and action not in _OWN_ACTIONS:
                    raise bad(key, action, "must be push, pull, delete, mount or one of "
                              + ", ".join(sorted(_OWN_ACTIONS)))
        if self.format not in ("distribution", "quay"):
            raise bad("format", self.format, "must be distribution or quay")
        if not 1 <= self.max_attempts <= 1000:
            raise bad("max_attempts", self.max_attempts, "must be between 1 and 1000")
        if not 1 <= self.batch_size <= 1000:
            raise bad("batch_size", self.batch_size, "must be between 1 and 1000")
        for header, value in self.header_pairs():
            if not header or any(c in header for c in ":\r\n ") or any(c in value for c in "\r\n"):
                raise bad(f"headers.{header}", value, "must be a header name and a one-line value")

    @property
    def timeout_seconds(self) -> float:
        return parse_duration(self.timeout)

    @property
    def backoff_seconds(self) -> float:
        return parse_duration(self.backoff)

    def header_pairs(self) -> list[tuple[str, str]]:
        return [(name, value) for name, values in self.headers.items()
                for value in ([values] if isinstance(values, str) else values)]


class NotificationEvents(Section, frozen=True):
    """Distribution's ``notifications.events``: accepted so its configuration loads; references are not sent."""

    includereferences: bool = False


class NotificationsSection(Section, frozen=True):
    """Webhooks, configured as Distribution's ``notifications`` (plus endpoints added at run time)."""

    endpoints: list[WebhookEndpoint] = msgspec.field(default_factory=list)
    events: NotificationEvents = msgspec.field(default_factory=NotificationEvents)
    #: the longest wait between two attempts of a delivery: a Go duration or seconds
    backoff_max: float | str = "1h"

    def __post_init__(self) -> None:
        names: set[str] = set()
        for index, endpoint in enumerate(self.endpoints):
            endpoint.check(f"notifications.endpoints[{index}].")
            if endpoint.name in names:
                raise ConfigError(f"notifications.endpoints[{index}].name: cannot use {endpoint.name!r}"
                                  " (another endpoint has that name)")
            names.add(endpoint.name)
        try:
            if parse_duration(self.backoff_max) <= 0:
                raise ValueError
        except ValueError:
            raise ConfigError(f"notifications.backoff_max: cannot use {self.backoff_max!r} (must be a positive"
                              " duration such as 1h, or seconds)") from None

    @property
    def backoff_max_seconds(self) -> float:
        return parse_duration(self.backoff_max)


class ServerConfig(Section, frozen=True):
    server: ServerSection = msgspec.field(default_factory=ServerSection)
    storage: StorageSection = msgspec.field(default_factory=StorageSection)
    database: DatabaseSection = msgspec.field(default_factory=DatabaseSection)
    auth: AuthSection = msgspec.field(default_factory=AuthSection)
    compatibility: CompatibilitySection = msgspec.field(default_factory=CompatibilitySection)
    audit: AuditSection = msgspec.field(default_factory=AuditSection)
    notifications: NotificationsSection = msgspec.field(default_factory=NotificationsSection)

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
