"""What the pull-through cache leaves in the store: lapsed leases are cleaned up, and a read-only server
serves proxied content without writing it."""

from __future__ import annotations

import time
from pathlib import Path

from tests.proxy.conftest import UpstreamServer
from tests.proxy.test_pull_through import cache_client, cache_server, manifest_get, proxy_entry, pull, upstream_gets
from tests.support.postgres import query


def lease_names(data: Path) -> list[str]:
    return sorted(row[0] for row in query(f"sqlite://{data / 'metadata.db'}", "SELECT name FROM job_leases"))


def stored(data: Path) -> dict[str, int]:
    """Rows of the content tables, and files in the data directory besides the database."""
    url = f"sqlite://{data / 'metadata.db'}"
    counts = {table: query(url, f"SELECT COUNT(*) FROM {table}")[0][0]
              for table in ("repositories", "blobs", "repository_blobs", "manifests", "tags", "uploads")}
    files = [path for path in data.rglob("*") if path.is_file() and not path.name.startswith("metadata.db")]
    return {**counts, "files": len(files)}


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


def test_read_only_pulls_through_uncached_then_caches_once_writable(
    distribution_upstream: UpstreamServer, tmp_path: Path,
) -> None:
    """In read-only mode an image not cached is pulled through with the upstream's digests and nothing is
    written; the same pull once the server is writable again caches it (later pulls stay local)."""
    image = distribution_upstream.push_image()
    name = f"up/{image.repository}"
    data = tmp_path / "cache-data"
    entry = proxy_entry(distribution_upstream, tmp_path)
    with cache_server(tmp_path, [entry], "--read-only", data=data) as cache:
        empty = stored(data)
        with cache_client(cache) as client:
            raw, digest, blobs = pull(client, cache, name, image.tag)
        assert (raw, digest, blobs) == (image.manifest, image.manifest_digest, image.blobs)
        by_digest = manifest_get(cache, name, image.manifest_digest)
        assert by_digest.status_code == 200 and by_digest.content == image.manifest
        assert by_digest.headers["Docker-Content-Digest"] == image.manifest_digest
        assert stored(data) == empty
    assert empty["blobs"] == empty["manifests"] == 0
    _, blob_gets = upstream_gets(distribution_upstream, image)
    assert all(count == 1 for count in blob_gets.values())
    with cache_server(tmp_path, [entry], data=data) as cache, cache_client(cache) as client:
        assert pull(client, cache, name, image.tag) == (image.manifest, image.manifest_digest, image.blobs)
        # a blob's last bytes go out once verified; its commit follows the answer by moments
        deadline = time.monotonic() + 10
        while (cached := stored(data))["blobs"] < len(image.blobs) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cached["blobs"] == len(image.blobs) and cached["manifests"] == 1 and cached["tags"] == 1
        assert cached["files"] >= empty["files"] + len(image.blobs)
        assert pull(client, cache, name, image.tag) == (image.manifest, image.manifest_digest, image.blobs)
    assert upstream_gets(distribution_upstream, image)[1] == {digest: 2 for digest in image.blobs}
