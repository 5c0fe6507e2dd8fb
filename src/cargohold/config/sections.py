"""The sections of the configuration, and :class:`ServerConfig`, the tree of them."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import msgspec

from .base import DEFAULT_DATA_DIR, DEFAULT_WORKERS, ConfigError, Section
from .notifications import NotificationsSection, is_http_url, parse_duration
from .proxies import ProxySection, check_proxies, proxy_retention
from .retention import RetentionSection


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
    #: each worker holds the manifests' pull times in memory and writes them this often (and when it stops)
    pull_times_flush_seconds: float = 5.0

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
        if not 0 < self.pull_times_flush_seconds <= 3600:
            raise ConfigError(f"server.pull_times_flush_seconds: {self.pull_times_flush_seconds} is not above 0"
                              " and at most 3600")
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
    #: blob files that no row names (left by a crash) are deleted once this old (by modification time)
    orphan_grace_seconds: float = 24 * 3600.0

    def __post_init__(self) -> None:
        if self.orphan_grace_seconds < 0:
            raise ConfigError(f"storage.filesystem.orphan_grace_seconds: {self.orphan_grace_seconds} is negative")

    def options(self, data_dir: str) -> dict[str, Any]:
        return {"root": self.root or data_dir, "orphan_grace_seconds": self.orphan_grace_seconds}


#: S3's smallest part but the last, and its most parts in one multipart upload
S3_MIN_PART_SIZE = 5 * 1024 * 1024
S3_MAX_PARTS = 10_000


class S3Storage(DriverOptions, frozen=True):
    """An S3-compatible bucket (path-style addressing, SigV4). Empty credentials: boto3's usual
    sources (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``~/.aws``, instance roles)."""

    #: empty: AWS's endpoint for ``region``
    endpoint: str = ""
    region: str = "us-east-1"
    bucket: str = ""
    #: keys start with it (``registry/`` puts blobs under ``registry/blobs/...``)
    prefix: str = ""
    access_key_id: str = ""
    secret_access_key: str = ""
    #: bytes per multipart part: a blob may be at most 10,000 parts
    part_size: int = 16 * 1024 * 1024
    #: blob GETs answer 307 to a presigned URL (else the registry streams the bytes)
    redirect: bool = True
    redirect_expiry_seconds: int = 20 * 60
    #: a call is tried this many times in all (throttling, 5xx answers, dropped connections), with backoff
    max_attempts: int = 5
    #: each connect to the store, and each wait for its answer, gives up after this long
    timeout_seconds: float = 30.0
    #: objects and multipart uploads that no row names (left by a crash) are removed once this old
    orphan_grace_seconds: float = 24 * 3600.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= 20:
            raise ConfigError(f"storage.s3.max_attempts: {self.max_attempts} is not between 1 and 20")
        if not 0 < self.timeout_seconds <= 3600:
            raise ConfigError(f"storage.s3.timeout_seconds: {self.timeout_seconds} is not above 0 and at most 3600")
        if self.orphan_grace_seconds < 0:
            raise ConfigError(f"storage.s3.orphan_grace_seconds: {self.orphan_grace_seconds} is negative")
        if self.part_size < S3_MIN_PART_SIZE:
            raise ConfigError(f"storage.s3.part_size: {self.part_size} is below S3's minimum of {S3_MIN_PART_SIZE}")
        if self.endpoint and not is_http_url(self.endpoint):
            raise ConfigError(f"storage.s3.endpoint: cannot use {self.endpoint!r} (must be an http or https URL)")
        if not 1 <= self.redirect_expiry_seconds <= 7 * 24 * 3600:
            raise ConfigError(f"storage.s3.redirect_expiry_seconds: {self.redirect_expiry_seconds} is not"
                              " between 1 and 604800 (SigV4's longest)")
        if self.prefix.startswith("/"):
            raise ConfigError(f"storage.s3.prefix: {self.prefix!r} must not start with '/'")


class StorageSection(Section, frozen=True):
    """``driver`` names the blob store; its options are the section of the same name (``filesystem: {root}``)."""

    #: a name of ``storage.factory.DRIVERS``: filesystem, s3, or memory (lost on exit; one worker only)
    driver: str = "filesystem"
    filesystem: FilesystemStorage = msgspec.field(default_factory=FilesystemStorage)
    s3: S3Storage = msgspec.field(default_factory=S3Storage)

    def __post_init__(self) -> None:
        if self.driver == "s3" and not self.s3.bucket:
            raise ConfigError("storage.s3.bucket: empty, but storage.driver is s3 (name the bucket)")

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
    #: PEM private key (EC P-256 or RSA) tokens are signed with; empty: generated once, kept in the database
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
    #: (Distribution's name); empty: generated once and kept in the database, beside the token key
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


class ScrubSection(Section, frozen=True):
    """The periodic scrub: each run re-hashes the next ``sample_size`` stored blobs (in digest order,
    round and round) and records those whose bytes do not match their digest or size."""

    enabled: bool = True
    interval_seconds: float = 3600.0
    #: blobs re-read and re-hashed per run
    sample_size: int = 100

    def __post_init__(self) -> None:
        if not 1 <= self.interval_seconds <= 30 * 24 * 3600:
            raise ConfigError(f"scrub.interval_seconds: {self.interval_seconds} is not between 1 and 2592000 (30 days)")
        if not 1 <= self.sample_size <= 1_000_000:
            raise ConfigError(f"scrub.sample_size: {self.sample_size} is not between 1 and 1000000")


class GcSection(Section, frozen=True):
    """Online garbage collection (:mod:`cargohold.service.gc`), run by the periodic jobs and ``cargohold gc``."""

    enabled: bool = True
    #: time between two runs of the job
    interval: float | str = "1h"
    #: how long a blob nothing references is kept (an upload's manifest may still come, a HEAD's push too)
    grace_period: float | str = "24h"
    #: how long a manifest no tag, index or subject keeps is kept (an index may still come for it)
    untagged_grace_period: float | str = "24h"
    #: referrers whose subject is gone: collected with it (collect), or kept (keep)
    referrers: str = "collect"

    def __post_init__(self) -> None:
        for name in ("interval", "grace_period", "untagged_grace_period"):
            try:
                seconds = parse_duration(getattr(self, name))
            except ValueError:
                raise ConfigError(f"gc.{name}: {getattr(self, name)!r} is not a duration (24h, 90m, or seconds)"
                                  ) from None
            if seconds < 0 or (name == "interval" and seconds <= 0):
                raise ConfigError(f"gc.{name}: {getattr(self, name)!r} must be more than 0"
                                  if name == "interval" else f"gc.{name}: {getattr(self, name)!r} is negative")
        if self.referrers not in ("collect", "keep"):
            raise ConfigError(f"gc.referrers: {self.referrers!r} is not collect or keep")

    def seconds(self, name: str) -> float:
        return parse_duration(getattr(self, name))


def _installed(*modules: str) -> bool:
    try:
        return all(importlib.util.find_spec(module) is not None for module in modules)
    except ImportError:  # a parent package is missing
        return False


class TracingSection(Section, frozen=True):
    """OpenTelemetry traces, exported with OTLP over HTTP; off (and not loaded) unless ``endpoint`` is set."""

    #: the collector's OTLP/HTTP address (``http://127.0.0.1:4318``: spans go to its ``/v1/traces``)
    endpoint: str = ""
    service_name: str = "cargohold"
    #: the share of requests traced (a request that names its trace in ``traceparent`` follows its caller)
    sample_ratio: float = 1.0

    def __post_init__(self) -> None:
        if self.endpoint and not is_http_url(self.endpoint):
            raise ConfigError(f"tracing.endpoint: cannot use {self.endpoint!r} (must be an http or https URL)")
        if self.endpoint and not _installed("opentelemetry.exporter.otlp.proto.http", "opentelemetry.sdk"):
            raise ConfigError("tracing.endpoint is set but OpenTelemetry is not installed:"
                              " pip install 'cargohold[tracing]'")
        if not self.service_name:
            raise ConfigError("tracing.service_name must not be empty")
        if not 0 <= self.sample_ratio <= 1:
            raise ConfigError(f"tracing.sample_ratio: {self.sample_ratio} is not between 0 and 1")


class UiSection(Section, frozen=True):
    """The web UI at ``/ui/`` (:mod:`cargohold.ui`)."""

    enabled: bool = True
    #: how long a login to the UI lasts
    session_lifetime_seconds: float = 8 * 3600.0

    def __post_init__(self) -> None:
        if not 60 <= self.session_lifetime_seconds <= 30 * 24 * 3600:
            raise ConfigError(f"ui.session_lifetime_seconds: {self.session_lifetime_seconds} is not between 60 and"
                              " 2592000 (30 days)")


class MetricsSection(Section, frozen=True):
    """``GET /metrics`` (Prometheus): on the main port behind a bearer token, or open on an address of its own."""

    enabled: bool = False
    #: a file holding the token scrapers send as ``Authorization: Bearer``; /metrics is then on the main port
    token_file: str | None = None
    #: HOST:PORT of a listener serving only /metrics, without credentials; the main port then has none
    listen: str | None = None

    def __post_init__(self) -> None:
        if not self.enabled:
            return
        if (self.token_file is None) == (self.listen is None):
            raise ConfigError("metrics: set either token_file (a bearer token on the main port) or listen"
                              " (an address of its own), not both or neither")
        if self.listen is not None:
            host, _, port = self.listen.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(f"metrics.listen must be HOST:PORT, not {self.listen!r}")

    @property
    def host(self) -> str:
        return (self.listen or "").rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int((self.listen or ":0").rsplit(":", 1)[1])


class ServerConfig(Section, frozen=True):
    server: ServerSection = msgspec.field(default_factory=ServerSection)
    storage: StorageSection = msgspec.field(default_factory=StorageSection)
    database: DatabaseSection = msgspec.field(default_factory=DatabaseSection)
    auth: AuthSection = msgspec.field(default_factory=AuthSection)
    compatibility: CompatibilitySection = msgspec.field(default_factory=CompatibilitySection)
    audit: AuditSection = msgspec.field(default_factory=AuditSection)
    notifications: NotificationsSection = msgspec.field(default_factory=NotificationsSection)
    retention: RetentionSection = msgspec.field(default_factory=RetentionSection)
    scrub: ScrubSection = msgspec.field(default_factory=ScrubSection)
    gc: GcSection = msgspec.field(default_factory=GcSection)
    tracing: TracingSection = msgspec.field(default_factory=TracingSection)
    ui: UiSection = msgspec.field(default_factory=UiSection)
    metrics: MetricsSection = msgspec.field(default_factory=MetricsSection)
    #: upstream registries served as pull-through caches, each under its prefix
    proxies: list[ProxySection] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        check_proxies(self.proxies)
        if self.storage.driver == "memory" and self.server.workers > 1:
            raise ConfigError(
                f"storage.driver memory keeps blobs inside one process, but server.workers is"
                f" {self.server.workers}: each worker would have a store of its own; set server.workers to 1"
            )

    @property
    def effective_retention(self) -> RetentionSection:
        """``retention`` with the policies the proxies' ``ttl`` derive (:func:`proxy_retention`)."""
        return proxy_retention(self.retention, self.proxies)

    @property
    def data_dir(self) -> str:
        return self.server.data_dir

    @property
    def metadata_url(self) -> str:
        return self.database.url or f"sqlite://{os.path.join(self.data_dir, 'metadata.db')}"

    @property
    def token_key_path(self) -> str:
        """The configured token key, or where versions before the keys were kept in the database made it."""
        return self.auth.token_key or os.path.join(self.data_dir, "auth", "token-key.pem")

    @property
    def token_cert_path(self) -> str:
        """The token key's self-signed certificate, for Distribution's ``auth.token.rootcertbundle``."""
        return os.path.join(self.data_dir, "auth", "token-cert.pem")

    @property
    def schema1_key_path(self) -> str:
        """The configured schema 1 key, or where versions before the keys were kept in the database made it."""
        return self.compatibility.schema1.signingkeyfile or os.path.join(self.data_dir, "auth", "schema1-key.pem")

    def to_json(self) -> str:
        return msgspec.json.encode(self).decode()

    @classmethod
    def from_json(cls, text: str) -> ServerConfig:
        return msgspec.json.decode(text, type=cls)


#: the flat keys of the first file format -> their place; each is also the name of its ``CARGOHOLD_*``
#: variable (upper case) and of its ``serve`` flag's value. A key not listed here has the variable
