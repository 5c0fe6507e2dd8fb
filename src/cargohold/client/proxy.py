"""Which proxy a request goes through: ``HTTP_PROXY``, ``HTTPS_PROXY`` and ``NO_PROXY``.

The rules are Go's ``net/http.ProxyFromEnvironment`` (what crane, skopeo, podman
and docker's daemon use), so a registry is reached the same way by all of them:

- ``HTTPS_PROXY`` for ``https://`` URLs, ``HTTP_PROXY`` for ``http://`` (lowercase
  names too); a value without a scheme is an ``http://`` proxy.
- loopback (``localhost``, ``*.localhost``, 127/8, ``::1``) is never proxied, whatever
  ``NO_PROXY`` says: a proxy elsewhere cannot reach this machine's loopback.
- ``NO_PROXY`` is a comma-separated list: ``*`` (no proxy at all), a domain
  (``example.com`` matches it and its subdomains, ``.example.com`` and
  ``*.example.com`` the subdomains only), an IP address or a CIDR range
  (``10.0.0.0/8``), each optionally with ``:port`` to match that port only.
"""

from __future__ import annotations

import ipaddress
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def is_loopback(registry: str) -> bool:
    """True for ``localhost`` and names under it, ``127.0.0.0/8`` and ``::1`` (with or without a port).

    Such a registry may fall back to plain HTTP (:mod:`.transport`) and is never proxied."""
    host = registry
    if host.startswith("["):
        host = host[1 : host.find("]")]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Domain(NamedTuple):
    suffix: str  # always starts with "."
    port: str  # "" matches any port
    exact_too: bool  # "example.com" matches example.com itself, ".example.com" does not

    def matches(self, host: str, port: str) -> bool:
        found = host.endswith(self.suffix) or (self.exact_too and host == self.suffix[1:])
        return found and self.port in ("", port)


class _Network(NamedTuple):
    network: IPNetwork
    port: str

    def matches(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: str) -> bool:
        return ip in self.network and self.port in ("", port)


def _split_port(entry: str) -> tuple[str, str]:
    """``host:port``, ``[v6]:port``, ``v6`` or ``host`` -> (host, port or "")."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else ""
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, port
    return entry, ""


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """Proxies by URL scheme and the ``NO_PROXY`` exceptions; empty: every request goes direct."""

    http: str | None = None
    https: str | None = None
    everything_direct: bool = False
    domains: tuple[_Domain, ...] = ()
    networks: tuple[_Network, ...] = ()

    @classmethod
    def from_environment(cls) -> ProxyConfig:
        """The proxies of this process's environment (read once: a client keeps what it started with)."""
        return cls.parse(urllib.request.getproxies_environment())

    @classmethod
    def parse(cls, env: Mapping[str, str]) -> ProxyConfig:
        """From ``{"http": ..., "https": ..., "no": ...}``, as :func:`urllib.request.getproxies` gives."""
        domains: list[_Domain] = []
        networks: list[_Network] = []
        everything = False
        for raw in env.get("no", "").split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry == "*":
                everything = True
                continue
            try:
                networks.append(_Network(ipaddress.ip_network(entry, strict=False), ""))
                continue
            except ValueError:
                pass
            host, port = _split_port(entry)
            try:
                networks.append(_Network(ipaddress.ip_network(host, strict=False), port))
                continue
            except ValueError:
                pass
            if host.startswith("*."):
                host = host[1:]
            if host and host != ".":
                domains.append(_Domain(host if host.startswith(".") else "." + host, port, not host.startswith(".")))
        return cls(
            http=_proxy_url(env.get("http")),
            https=_proxy_url(env.get("https")),
            everything_direct=everything,
            domains=tuple(domains),
            networks=tuple(networks),
        )

    def proxy_for(self, url: str) -> str | None:
        """The proxy URL for a request to ``url``, or None to connect directly."""
        if self.http is None and self.https is None:
            return None
        parts = urlsplit(url)
        proxy = self.https if parts.scheme == "https" else self.http if parts.scheme == "http" else None
        if proxy is None or self.everything_direct or not parts.hostname:
            return None
        host = parts.hostname.lower()  # without brackets or port
        if is_loopback(host):
            return None
        try:
            port = str(parts.port or (443 if parts.scheme == "https" else 80))
        except ValueError:
            return proxy  # an invalid port: the request fails with httpx's error, not ours
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is not None and any(n.matches(ip, port) for n in self.networks):
            return None
        if any(d.matches(host, port) for d in self.domains):
            return None
        return proxy


def _proxy_url(value: str | None) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    return value if "://" in value else "http://" + value
