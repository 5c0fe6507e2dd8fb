"""The registry with its proxies, built from the configuration: one :class:`Upstream` per proxy."""

from __future__ import annotations

from ..config.proxies import ProxySection
from ..events.recorder import Recorder
from ..formats.schema1 import PrivateKey
from ..metadata.store import MetadataStore
from ..service.common import RegistryOptions
from ..service.pulls import PullTimes
from ..storage.driver import BlobStore
from .routing import ProxyRoutes
from .service import ProxyingRegistry
from .upstream import Upstream, UpstreamSettings


def upstream_settings(proxy: ProxySection) -> UpstreamSettings:
    return UpstreamSettings(
        name=proxy.prefix, url=proxy.upstream.rstrip("/"), username=proxy.username or None,
        password=proxy.password() if proxy.password_file else None, token=proxy.token or None,
        docker_config=proxy.docker_config or None, ca=proxy.tls.ca or None, insecure=proxy.tls.insecure,
        timeout_seconds=proxy.timeout_seconds,
    )


def proxying_registry(
    proxies: list[ProxySection], blobs: BlobStore, meta: MetadataStore, options: RegistryOptions, holder: str,
    schema1_key: PrivateKey | None = None, recorder: Recorder | None = None, pulls: PullTimes | None = None,
) -> ProxyingRegistry:
    upstreams = {proxy.prefix: Upstream(upstream_settings(proxy)) for proxy in proxies}
    return ProxyingRegistry(blobs, meta, options, ProxyRoutes(proxies), upstreams, holder, schema1_key, recorder,
                            pulls)
