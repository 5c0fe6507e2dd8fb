"""The ``notifications`` section: webhook endpoints as Distribution configures them, with cargohold's own keys."""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec

from .base import ConfigError, Section

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
    #: false: this server records each event's deliveries but sends none (another replica that shares its
    #: database sends them; for replicas kept for serving alone)
    deliver: bool = True

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
