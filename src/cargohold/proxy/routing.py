"""Which proxy a repository name belongs to, and the name it has upstream.

A request's name is made local before access control (:meth:`ProxyRoutes.local_name`), so access is
always checked on the name the cache stores it under:

- ``?ns=docker.io`` (containerd's mirror convention) puts the name under the prefix of the proxy whose
  upstream is that host (``docker.io``, ``index.docker.io`` and ``registry-1.docker.io`` are one);
- a name with one component after a proxy's prefix gets its ``default_namespace``
  (``hub/debian`` is ``hub/library/debian``), so that both spellings share one cached repository.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs, urlsplit

from ..config.proxies import ProxySection, proxy_of

#: the names Docker Hub's registry goes by
DOCKER_HUB: Final = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


def host_key(host: str) -> str:
    """A registry host as ``?ns=`` and the configuration compare them: lower case, Docker Hub's names as one."""
    host = host.strip().lower().rstrip("/")
    return "docker.io" if host in DOCKER_HUB else host


def upstream_host(url: str) -> str:
    """``host[:port]`` of an upstream URL."""
    return urlsplit(url).netloc.rsplit("@", 1)[-1].lower()


@dataclass(frozen=True, slots=True)
class ProxyName:
    """A repository name under a proxy: the proxy, and the repository's name upstream."""

    proxy: ProxySection
    upstream_name: str


class ProxyRoutes:
    def __init__(self, proxies: Sequence[ProxySection]) -> None:
        self.proxies = list(proxies)
        #: ``?ns=`` host -> the first proxy with that upstream host
        self._by_host: dict[str, ProxySection] = {}
        for proxy in self.proxies:
            self._by_host.setdefault(host_key(upstream_host(proxy.upstream)), proxy)

    def match(self, name: str) -> ProxyName | None:
        """The proxy ``name`` is under, and its upstream name; None for an ordinary repository."""
        proxy = proxy_of(self.proxies, name)
        if proxy is None:
            return None
        rest = name[len(proxy.prefix) + 1:]
        if proxy.default_namespace and "/" not in rest:
            rest = f"{proxy.default_namespace}/{rest}"
        return ProxyName(proxy, rest)

    def is_proxied(self, name: str) -> bool:
        return proxy_of(self.proxies, name) is not None

    def local_name(self, name: str, query_string: bytes) -> str:
        """The name a request names, as the cache stores it (see the module's docstring)."""
        if b"ns=" in query_string:
            hosts = parse_qs(query_string.decode("latin-1")).get("ns")
            proxy = self._by_host.get(host_key(hosts[0])) if hosts else None
            if proxy is not None:
                name = f"{proxy.prefix}/{name}"
        proxy = proxy_of(self.proxies, name)
        if proxy is not None and proxy.default_namespace:
            rest = name[len(proxy.prefix) + 1:]
            if rest and "/" not in rest:
                name = f"{proxy.prefix}/{proxy.default_namespace}/{rest}"
        return name
