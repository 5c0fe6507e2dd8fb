"""The ``proxies`` list: upstream registries served as pull-through caches under a path prefix.

``dockerhub/library/debian`` is the proxy ``dockerhub``'s upstream repository ``library/debian``. Each entry is
checked with its place in the list (``proxies[1].upstream: ...``); the list as a whole must not give two
proxies prefixes of which one is the other's start (``hub`` and ``hub/x``), since a name could then be both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Final
from urllib.parse import urlsplit

import msgspec

from ..reference import is_repository_name
from .base import ConfigError, Section
from .notifications import is_http_url, parse_duration
from .retention import KeepTags, RetentionPolicy, RetentionSection

#: ``linux/amd64``, ``linux/arm64/v8``: os/architecture[/variant]
_PLATFORM: Final = re.compile(r"[a-z0-9_.-]+/[a-z0-9_.-]+(?:/[a-z0-9_.-]+)?")


class ProxyTls(Section, frozen=True):
    #: a PEM bundle of the CAs the upstream's certificate may chain to (else the system's)
    ca: str = ""
    #: skip certificate checks (a test upstream with a self-signed certificate)
    insecure: bool = False


class ProxySection(Section, frozen=True):
    #: one or more repository-name components; local ``<prefix>/<name>`` is upstream ``<name>``
    prefix: str
    #: the upstream registry's base URL (``https://registry-1.docker.io``)
    upstream: str
    username: str = ""
    #: a file holding the upstream password (read when the configuration is loaded)
    password_file: str = ""
    #: a bearer token sent to the upstream as is
    token: str = ""
    #: a docker ``config.json`` whose entry for the upstream's host gives the credentials
    docker_config: str = ""
    tls: ProxyTls = msgspec.field(default_factory=ProxyTls)
    #: a cached tag is served without asking the upstream for this long (then a HEAD decides)
    revalidate: float | str = "5m"
    #: tags not pulled for this long are deleted by retention (then GC frees their bytes); 0 keeps them
    ttl: float | str = "168h"
    #: what a name without a slash is prefixed with upstream (``library`` for Docker Hub)
    default_namespace: str = ""
    #: the platforms (``linux/amd64``) whose images are served from an index; empty: every one
    platforms: list[str] = msgspec.field(default_factory=list)
    #: each call to the upstream gives up after this long
    timeout: float | str = "30s"

    def check(self, where: str) -> None:
        """Raise :class:`ConfigError` naming ``where`` (``proxies[0]``) for a bad value."""
        prefix = self.prefix.strip("/")
        if not prefix or not is_repository_name(prefix) or prefix != self.prefix:
            raise ConfigError(f"{where}.prefix: cannot use {self.prefix!r} (one or more repository name"
                              " components, lower case, such as dockerhub or mirrors/ghcr)")
        if not is_http_url(self.upstream):
            raise ConfigError(f"{where}.upstream: cannot use {self.upstream!r} (must be an http or https URL)")
        parts = urlsplit(self.upstream)
        if parts.path.strip("/") or parts.query or parts.fragment or parts.username or parts.password:
            raise ConfigError(f"{where}.upstream: cannot use {self.upstream!r} (the registry's base URL: scheme"
                              " and host only; credentials go in username and password_file)")
        if self.password_file and self.token:
            raise ConfigError(f"{where}: password_file and token exclude each other")
        if bool(self.username) != bool(self.password_file):
            raise ConfigError(f"{where}: username and password_file go together")
        if self.docker_config and (self.username or self.token):
            raise ConfigError(f"{where}: docker_config excludes username, password_file and token")
        if self.password_file:
            self.password()  # unreadable or empty: refused now, not at the first pull
        if self.tls.ca and self.tls.insecure:
            raise ConfigError(f"{where}.tls: ca and insecure exclude each other")
        for name in ("revalidate", "ttl", "timeout"):
            seconds = _seconds(f"{where}.{name}", getattr(self, name))
            if name == "timeout" and seconds <= 0:
                raise ConfigError(f"{where}.timeout: cannot use {self.timeout!r} (must be more than 0)")
        if self.default_namespace and (
                "/" in self.default_namespace or not is_repository_name(self.default_namespace)):
            raise ConfigError(f"{where}.default_namespace: cannot use {self.default_namespace!r} (one repository"
                              " name component, such as library)")
        for index, platform in enumerate(self.platforms):
            if not _PLATFORM.fullmatch(platform):
                raise ConfigError(f"{where}.platforms[{index}]: cannot use {platform!r} (os/architecture, such as"
                                  " linux/amd64 or linux/arm64/v8)")

    def password(self) -> str:
        """The password file's first line."""
        try:
            with open(self.password_file, encoding="utf-8") as file:
                text = file.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"proxy {self.prefix!r}: cannot read password_file {self.password_file}: {exc}"
                              ) from None
        if not text:
            raise ConfigError(f"proxy {self.prefix!r}: password_file {self.password_file} is empty")
        return text

    @property
    def revalidate_seconds(self) -> float:
        return _seconds("revalidate", self.revalidate)

    @property
    def ttl_seconds(self) -> float:
        return _seconds("ttl", self.ttl)

    @property
    def timeout_seconds(self) -> float:
        return _seconds("timeout", self.timeout)


def _seconds(where: str, value: float | str) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise ConfigError(f"{where}: cannot use {value!r} (a duration such as 30s, 5m or 168h, or seconds)") from None
    if seconds < 0:
        raise ConfigError(f"{where}: cannot use {value!r} (must not be negative)")
    return seconds


def check_proxies(proxies: Sequence[ProxySection]) -> None:
    """Each entry, then the prefixes together: distinct, and none the start of another."""
    for index, proxy in enumerate(proxies):
        proxy.check(f"proxies[{index}]")
    for index, proxy in enumerate(proxies):
        for other_index, other in enumerate(proxies[:index]):
            if f"{proxy.prefix}/".startswith(f"{other.prefix}/") or f"{other.prefix}/".startswith(f"{proxy.prefix}/"):
                raise ConfigError(f"proxies[{index}].prefix: {proxy.prefix!r} overlaps proxies[{other_index}].prefix"
                                  f" {other.prefix!r} (a repository name would belong to both)")


def proxy_of(proxies: Sequence[ProxySection], name: str) -> ProxySection | None:
    """The proxy whose prefix starts the repository ``name`` (``hub/library/debian``: ``hub``), if any."""
    for proxy in proxies:
        if name.startswith(proxy.prefix) and name[len(proxy.prefix):len(proxy.prefix) + 1] == "/":
            return proxy
    return None


def proxied_names(proxies: Sequence[ProxySection]) -> Callable[[str], bool]:
    """Whether a repository name is under a proxy's prefix (so read-only for clients)."""
    found = list(proxies)
    return lambda name: proxy_of(found, name) is not None


def proxy_retention(
    retention: RetentionSection, proxies: Sequence[ProxySection], *, configured: bool = False,
) -> RetentionSection:
    """``retention`` with, first, a policy per proxy with a ``ttl``: its tags are kept while pulled within
    it, its untagged manifests go. The job runs if any proxy has one; the configured policies apply only
    if the configuration enabled retention (or ``configured``: ``cargohold retention`` applies them anyway)."""
    derived = [
        RetentionPolicy(repositories=[f"{proxy.prefix}/*"], delete_untagged=True,
                        keep_tags=[KeepTags(pulled_within=proxy.ttl_seconds)])
        for proxy in proxies if proxy.ttl_seconds > 0
    ]
    if not derived:
        return retention
    kept = retention.policies if retention.enabled or configured else []
    return msgspec.structs.replace(retention, enabled=True, policies=[*derived, *kept])
