"""What the pull-through cache leaves in the store: lapsed leases are cleaned up, and a read-only server
serves proxied content without writing it."""

from __future__ import annotations

import time
from pathlib import Path

from tests.proxy.conftest import UpstreamServer
from tests.proxy.test_pull_through import cache_server, manifest_get, proxy_entry
from tests.support.postgres import query


def lease_names(data: Path) -> list[str]:
    return sorted(row[0] for row in query(f"sqlite://{data / 'metadata.db'}", "SELECT name FROM job_leases"))


def test_a_proxy_tags_lapsed_lease_is_dropped_by_the_purge(
    distribution_upstream: UpstreamServer, tmp_path: Path,
) -> None:
    """A tag's lease is left to lapse after its check; the purge job (every second here) drops it once it
    has been expired an interval, and keeps its own live lease."""
    image = distribution_upstream.push_image()
    data = tmp_path / "cache-data"
    entry = proxy_entry(distribution_upstream, tmp_path, revalidate="1s")
    with cache_server(tmp_path, [entry], data=data, server={"upload_max_age_seconds": 1}) as cache:
        response = manifest_get(cache, f"up/{image.repository}", image.tag)
        assert response.status_code == 200
        tag_lease = f"proxy:up/{image.repository}:{image.tag}"
        assert tag_lease in lease_names(data)
        deadline = time.monotonic() + 10
        while tag_lease in lease_names(data):
            assert time.monotonic() < deadline, "the tag's lapsed lease was never dropped"
            time.sleep(0.2)
        assert "purge-uploads" in lease_names(data)
