"""The pull-through cache as the server runs it: real upstreams (Distribution with htpasswd, cargohold with
token auth), a real cache server, real clients; upstream GETs counted in the upstream's own access log."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cargohold.cli.main import main
from cargohold.client import RegistryClient, TransportOptions
from cargohold.digest import Digest
from cargohold.formats import MediaType
from cargohold.reference import Reference
from tests.interop.tools import Clients, OciLayout, requires_podman, requires_skopeo
from tests.proxy.conftest import PushedImage, UpstreamServer
from tests.support.faultproxy import FaultProxy
from tests.support.servers import CargoholdServer, free_port

MANIFEST_ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"


def proxy_entry(upstream: UpstreamServer, tmp_path: Path, prefix: str = "up", url: str | None = None,
                **more: Any) -> dict[str, Any]:
    password = tmp_path / f"{prefix.replace('/', '-')}-password"
    password.write_text(upstream.password + "\n")
    return {"prefix": prefix, "upstream": url or upstream.url, "username": upstream.username,
            "password_file": str(password), "timeout": "5s", **more}


@contextlib.contextmanager
def cache_server(tmp_path: Path, proxies: list[dict[str, Any]], *args: str,
                 data: Path | None = None, server: dict[str, Any] | None = None) -> Iterator[CargoholdServer]:
    config = tmp_path / f"cache-{uuid.uuid4().hex[:6]}.yml"
    config.write_text(yaml.safe_dump({"proxies": proxies, **({"server": server} if server else {})}))
    server = CargoholdServer(data or tmp_path / "cache-data", free_port(), ["--config", str(config), *args],
                             {"CARGOHOLD_PASSWORD_COST": "4"})
    server.start()
    try:
        yield server
    finally:
        server.stop()


def cache_client(cache: CargoholdServer) -> RegistryClient:
    return RegistryClient(options=TransportOptions(retries=0, insecure_registries=frozenset({cache.host})))


def pull(client: RegistryClient, cache: CargoholdServer, name: str, tag: str) -> tuple[bytes, str, dict[str, bytes]]:
    """The manifest (raw, digest) and every blob it names, through the cache."""
    ref = Reference(cache.host, name, tag=tag)
    manifest = client.get_manifest(ref)
    document = json.loads(manifest.raw)
    blobs = {}
    for descriptor in [document["config"], *document["layers"]]:
        blobs[descriptor["digest"]] = client.read_blob(ref, Digest.parse(descriptor["digest"]), limit=1 << 24)
    return manifest.raw, str(manifest.digest), blobs


def manifest_get(cache: CargoholdServer, name: str, reference: str, **params: str) -> httpx.Response:
    return httpx.get(f"{cache.url}/v2/{name}/manifests/{reference}", params=params,
                     headers={"Accept": MANIFEST_ACCEPT}, timeout=30)


def upstream_gets(upstream: UpstreamServer, image: PushedImage) -> tuple[int, dict[str, int]]:
    """GETs the upstream answered for the image's manifest (by tag or digest), and for each blob."""
    manifests = upstream.gets(image.repository, "manifests")
    return manifests, {digest: upstream.gets(image.repository, "blobs", digest) for digest in image.blobs}


def push_tar_image(upstream: UpstreamServer) -> PushedImage:
    """An image of two gzipped tar layers whose config names their diff IDs, as podman wants to unpack it."""
    layers, diff_ids = [], []
    for index in range(2):
        tarred = io.BytesIO()
        with tarfile.open(fileobj=tarred, mode="w") as archive:
            data = f"layer {index} {uuid.uuid4()}\n".encode()
            entry = tarfile.TarInfo(f"file-{index}.txt")
            entry.size = len(data)
            archive.addfile(entry, io.BytesIO(data))
        diff_ids.append(str(Digest.of(tarred.getvalue())))
        layers.append(gzip.compress(tarred.getvalue(), mtime=0))
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    blobs = {str(Digest.of(data)): data for data in [config, *layers]}
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST,
        "config": {"mediaType": MediaType.OCI_CONFIG, "digest": str(Digest.of(config)), "size": len(config)},
        "layers": [{"mediaType": MediaType.OCI_LAYER_GZIP, "digest": str(Digest.of(layer)), "size": len(layer)}
                   for layer in layers],
    }).encode()
    repository = f"test/t{uuid.uuid4().hex[:10]}"
    ref = Reference(upstream.host, repository, tag="v1")
    with upstream.client() as client:
        for digest, data in blobs.items():
            client.upload_blob(ref, Digest.parse(digest), len(data), [data])
        pushed = client.put_manifest(ref, manifest, MediaType.OCI_MANIFEST)
    return PushedImage(repository, "v1", manifest, str(pushed), MediaType.OCI_MANIFEST, blobs)


def error_code(response: httpx.Response) -> str:
    return str(response.json()["errors"][0]["code"])


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory, distribution_upstream: UpstreamServer, cargohold_upstream: UpstreamServer,
) -> Iterator[CargoholdServer]:
    """One cache for the tests that need no settings of their own: ``up`` (and ``hub`` with the default namespace
    ``library``, ``plat`` serving linux/amd64 only) in front of Distribution, ``cg`` in front of cargohold."""
    base = tmp_path_factory.mktemp("shared-cache")
    proxies = [proxy_entry(distribution_upstream, base, "up"), proxy_entry(cargohold_upstream, base, "cg"),
               proxy_entry(distribution_upstream, base, "hub", default_namespace="library"),
               proxy_entry(distribution_upstream, base, "plat", platforms=["linux/amd64"])]
    with cache_server(base, proxies) as cache:
        yield cache


# pulls and bytes


def test_cargohold_client_pulls_through_each_upstream_once(
    any_upstream: UpstreamServer, shared: CargoholdServer,
) -> None:
    image = any_upstream.push_image()
    name = f"{'up' if any_upstream.kind == 'distribution' else 'cg'}/{image.repository}"
    with cache_client(shared) as client:
        cache = shared
        # a HEAD of a blob not cached answers from the upstream's HEAD: no GET
        layer = image.layers[0]
        head = httpx.head(f"{cache.url}/v2/{name}/blobs/{layer}")
        assert head.status_code == 200 and int(head.headers["content-length"]) == len(image.blobs[layer])
        for _ in range(2):
            raw, digest, blobs = pull(client, cache, name, image.tag)
            assert raw == image.manifest and digest == image.manifest_digest
            assert blobs == image.blobs
        # the second pull came from the cache
        assert upstream_gets(any_upstream, image) == (1, dict.fromkeys(image.blobs, 1))
        # by digest too, from the cache
        by_digest = manifest_get(cache, name, image.manifest_digest)
        assert by_digest.status_code == 200 and by_digest.content == image.manifest
        assert by_digest.headers["docker-content-digest"] == image.manifest_digest
        assert any_upstream.gets(image.repository, "manifests") == 1
        tags = httpx.get(f"{cache.url}/v2/{name}/tags/list").json()
        assert tags == {"name": name, "tags": [image.tag]}


@requires_skopeo
@requires_podman
def test_skopeo_and_podman_pull_through_the_cache(
    distribution_upstream: UpstreamServer, shared: CargoholdServer, tmp_path: Path,
) -> None:
    image = push_tar_image(distribution_upstream)
    cache = shared
    clients = Clients(tmp_path / "clients", [cache.host])
    try:
        layout = tmp_path / "layout"
        source = f"docker://{cache.host}/up/{image.repository}:{image.tag}"
        assert clients.skopeo.inspect_raw(source) == image.manifest
        clients.skopeo.copy(source, f"oci:{layout}:got", "--preserve-digests")
        pulled = OciLayout(layout)
        assert pulled.descriptor("got")["digest"] == image.manifest_digest
        assert pulled.blob(image.manifest_digest) == image.manifest
        for digest, data in image.blobs.items():
            assert pulled.blob(digest) == data
        clients.podman.run("pull", "--tls-verify=false", f"{cache.host}/up/{image.repository}:{image.tag}")
        digests = clients.podman.out("images", "--digests", "--format", "{{.Digest}}")
        assert image.manifest_digest in digests
    finally:
        clients.close()
    assert upstream_gets(distribution_upstream, image) == (1, dict.fromkeys(image.blobs, 1))


def test_twenty_concurrent_pulls_through_two_workers_fetch_each_part_once(
    distribution_upstream: UpstreamServer, tmp_path: Path,
) -> None:
    image = distribution_upstream.push_image(layers=[bytes([i]) * (300_000 + i) for i in range(3)])
    name = f"up/{image.repository}"
    with cache_server(tmp_path, [proxy_entry(distribution_upstream, tmp_path)], "--workers", "2") as cache:
        results: list[tuple[bytes, dict[str, bytes]]] = []
        failures: list[BaseException] = []
        start = threading.Barrier(20)

        def one() -> None:
            try:
                with httpx.Client(base_url=cache.url, timeout=60) as http:
                    start.wait()
                    manifest = http.get(f"/v2/{name}/manifests/{image.tag}", headers={"Accept": MANIFEST_ACCEPT})
                    manifest.raise_for_status()
                    blobs = {}
                    for digest in image.blobs:
                        got = http.get(f"/v2/{name}/blobs/{digest}")
                        got.raise_for_status()
                        blobs[digest] = got.content
                    results.append((manifest.content, blobs))
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=one) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures[0]
        assert results == [(image.manifest, image.blobs)] * 20
        assert upstream_gets(distribution_upstream, image) == (1, dict.fromkeys(image.blobs, 1))


# an upstream that fails


def test_upstream_stopped_cached_tag_still_pulls_with_a_warning(
    start_distribution_upstream: Any, tmp_path: Path,
) -> None:
    upstream: UpstreamServer = start_distribution_upstream()
    image = upstream.push_image()
    never_pulled = upstream.push_image(tag="v2", repository=image.repository)
    name = f"up/{image.repository}"
    with cache_server(tmp_path, [proxy_entry(upstream, tmp_path, revalidate="1s")]) as cache, \
            cache_client(cache) as client:
        pull(client, cache, name, image.tag)
        tags = httpx.get(f"{cache.url}/v2/{name}/tags/list").json()["tags"]
        assert tags == [image.tag, never_pulled.tag]  # the upstream's list
        upstream.stop()
        assert httpx.get(f"{cache.url}/v2/{name}/tags/list").json()["tags"] == [image.tag]  # the cached one
        time.sleep(1.1)  # past revalidate: the cache asks the upstream, which does not answer
        for _ in range(2):  # the second within revalidate of the failed check: still warned
            served = manifest_get(cache, name, image.tag)
            assert served.status_code == 200 and served.content == image.manifest
            assert "upstream unavailable" in served.headers["warning"] and served.headers["warning"].startswith("299")
        raw, digest, blobs = pull(client, cache, name, image.tag)
        assert (raw, digest, blobs) == (image.manifest, image.manifest_digest, image.blobs)
        refused = manifest_get(cache, name, never_pulled.tag)
        assert refused.status_code == 503 and error_code(refused) == "UNAVAILABLE"
        assert "unavailable" in refused.json()["errors"][0]["message"]
        refused = manifest_get(cache, name, never_pulled.manifest_digest)
        assert refused.status_code == 503 and error_code(refused) == "UNAVAILABLE"
        for request in (httpx.get, httpx.head):
            refused = request(f"{cache.url}/v2/{name}/blobs/{never_pulled.layers[0]}")
            assert refused.status_code == 503
    assert "serving a cached tag" in cache.log()


def test_upstream_answering_429_cached_tag_still_pulls(distribution_upstream: UpstreamServer, tmp_path: Path) -> None:
    image = distribution_upstream.push_image()
    other = distribution_upstream.push_image()
    faults = FaultProxy(distribution_upstream.port).start()
    try:
        entry = proxy_entry(distribution_upstream, tmp_path, url=faults.endpoint, revalidate="1s")
        with cache_server(tmp_path, [entry]) as cache, cache_client(cache) as client:
            pull(client, cache, f"up/{image.repository}", image.tag)
            faults.set("throttle")
            time.sleep(1.1)
            served = manifest_get(cache, f"up/{image.repository}", image.tag)
            assert served.status_code == 200 and served.content == image.manifest
            assert "upstream unavailable" in served.headers["warning"]
            refused = manifest_get(cache, f"up/{other.repository}", other.tag)
            assert refused.status_code == 429 and error_code(refused) == "TOOMANYREQUESTS"
            assert refused.headers["retry-after"] == "1"  # the upstream's
            assert faults.planted >= 2
    finally:
        faults.stop()


def test_a_tag_moved_upstream_is_served_after_revalidate(distribution_upstream: UpstreamServer, tmp_path: Path) -> None:
    first = distribution_upstream.push_image()
    moved = distribution_upstream.push_image(repository=first.repository, tag="next")
    name = f"up/{first.repository}"
    with cache_server(tmp_path, [proxy_entry(distribution_upstream, tmp_path, revalidate="2s")]) as cache, \
            cache_client(cache) as client:
        assert pull(client, cache, name, first.tag)[1] == first.manifest_digest
        with distribution_upstream.client() as upstream:  # the tag moves upstream: one PUT
            upstream.put_manifest(Reference(distribution_upstream.host, first.repository, tag=first.tag),
                                  moved.manifest, moved.media_type)
        assert manifest_get(cache, name, first.tag).headers["docker-content-digest"] == first.manifest_digest
        time.sleep(2.1)
        raw, digest, blobs = pull(client, cache, name, first.tag)
        assert (raw, digest, blobs) == (moved.manifest, moved.manifest_digest, moved.blobs)
        # the old manifest stays cached by digest
        assert manifest_get(cache, name, first.manifest_digest).content == first.manifest
        # revalidating the unchanged tag is a HEAD, not a GET
        before = distribution_upstream.gets(first.repository, "manifests")
        time.sleep(2.1)
        assert manifest_get(cache, name, first.tag).headers["docker-content-digest"] == moved.manifest_digest
        assert distribution_upstream.gets(first.repository, "manifests") == before
        assert any(method == "HEAD" and path == f"/v2/{first.repository}/manifests/{first.tag}"
                   for method, path, _ in distribution_upstream.requests())


def test_unknown_upstream_names_answer_the_spec_codes(
    distribution_upstream: UpstreamServer, shared: CargoholdServer,
) -> None:
    image = distribution_upstream.push_image()
    cache = shared
    missing_tag = manifest_get(cache, f"up/{image.repository}", "nope")
    assert missing_tag.status_code == 404 and error_code(missing_tag) == "MANIFEST_UNKNOWN"
    missing_blob = httpx.get(f"{cache.url}/v2/up/{image.repository}/blobs/sha256:{'0' * 64}")
    assert missing_blob.status_code == 404 and error_code(missing_blob) == "BLOB_UNKNOWN"


def test_a_range_of_a_blob_not_cached_is_passed_to_the_upstream(
    distribution_upstream: UpstreamServer, shared: CargoholdServer,
) -> None:
    image = distribution_upstream.push_image()
    layer = image.layers[1]
    url = f"/v2/up/{image.repository}/blobs/{layer}"
    with httpx.Client(base_url=shared.url) as http:
        part = http.get(url, headers={"Range": "bytes=100-1099"})
        assert part.status_code == 206 and part.content == image.blobs[layer][100:1100]
        assert part.headers["content-range"] == f"bytes 100-1099/{len(image.blobs[layer])}"
        unsatisfiable = http.get(url, headers={"Range": f"bytes={len(image.blobs[layer])}-"})
        assert unsatisfiable.status_code == 416 and error_code(unsatisfiable) == "RANGE_INVALID"
        for _ in range(2):  # the range was not cached: the first whole GET fetches, the second is local
            whole = http.get(url)
            assert whole.status_code == 200 and whole.content == image.blobs[layer]
        assert distribution_upstream.gets(image.repository, "blobs", layer) == 2


def test_upstream_refusing_the_caches_credentials_is_unavailable(
    distribution_upstream: UpstreamServer, tmp_path: Path,
) -> None:
    image = distribution_upstream.push_image()
    entry = proxy_entry(distribution_upstream, tmp_path)
    Path(entry["password_file"]).write_text("wrong-password\n")
    with cache_server(tmp_path, [entry]) as cache:
        refused = manifest_get(cache, f"up/{image.repository}", image.tag)
        assert refused.status_code == 503 and error_code(refused) == "UNAVAILABLE"
        assert "refused this cache's credentials" in refused.json()["errors"][0]["message"]


# names


def test_ns_parameter_maps_a_containerd_mirror_request_to_its_proxy(
    distribution_upstream: UpstreamServer, shared: CargoholdServer,
) -> None:
    image = distribution_upstream.push_image()
    cache = shared
    served = manifest_get(cache, image.repository, image.tag, ns=distribution_upstream.host)
    assert served.status_code == 200 and served.content == image.manifest
    layer = image.layers[0]
    blob = httpx.get(f"{cache.url}/v2/{image.repository}/blobs/{layer}", params={"ns": distribution_upstream.host})
    assert blob.status_code == 200 and blob.content == image.blobs[layer]
    # cached under the local name, of the first proxy of that upstream host
    catalog = httpx.get(f"{cache.url}/v2/_catalog").json()["repositories"]
    assert f"up/{image.repository}" in catalog and image.repository not in catalog
    # a host no proxy serves: the name as it came (containerd then falls back to the upstream itself)
    other = manifest_get(cache, image.repository, image.tag, ns="quay.io")
    assert other.status_code == 404 and error_code(other) == "NAME_UNKNOWN"


def test_a_name_without_a_namespace_gets_the_default_one(
    distribution_upstream: UpstreamServer, shared: CargoholdServer,
) -> None:
    image = distribution_upstream.push_image(repository=f"library/r{uuid.uuid4().hex[:8]}")
    short = image.repository.split("/", 1)[1]
    cache = shared
    for name in (f"hub/{short}", f"hub/library/{short}"):
        served = manifest_get(cache, name, image.tag)
        assert served.status_code == 200 and served.content == image.manifest
    catalog = httpx.get(f"{cache.url}/v2/_catalog").json()["repositories"]
    assert f"hub/library/{short}" in catalog and f"hub/{short}" not in catalog
    assert distribution_upstream.gets(image.repository, "manifests") == 1


# read-only, and access


def test_proxy_repositories_are_read_only(distribution_upstream: UpstreamServer, shared: CargoholdServer) -> None:
    image = distribution_upstream.push_image()
    name = f"up/{image.repository}"
    cache = shared
    assert manifest_get(cache, name, image.tag).status_code == 200
    writes = [
        httpx.post(f"{cache.url}/v2/{name}/blobs/uploads/"),
        httpx.post(f"{cache.url}/v2/{name}/blobs/uploads/", params={"mount": image.layers[0], "from": name}),
        httpx.put(f"{cache.url}/v2/{name}/manifests/v9", content=image.manifest,
                  headers={"Content-Type": image.media_type}),
        httpx.delete(f"{cache.url}/v2/{name}/manifests/{image.manifest_digest}"),
        httpx.delete(f"{cache.url}/v2/{name}/blobs/{image.layers[0]}"),
    ]
    for response in writes:
        assert response.status_code == 405 and error_code(response) == "UNSUPPORTED", response.text
    assert manifest_get(cache, name, image.tag).status_code == 200
    # an ordinary repository takes pushes, and mounts from the cache
    assert httpx.post(f"{cache.url}/v2/team/app/blobs/uploads/").status_code == 202
    mounted = httpx.post(f"{cache.url}/v2/team/app/blobs/uploads/",
                         params={"mount": image.blobs and next(iter(image.blobs)), "from": name})
    assert mounted.status_code in (201, 202)


def _token(cache: CargoholdServer, scope: str, auth: tuple[str, str] | None) -> tuple[str, str]:
    answer = httpx.get(f"{cache.url}/auth/token", params={"service": "cargohold", "scope": scope}, auth=auth)
    answer.raise_for_status()
    return answer.json()["token"], answer.json()["scope"]


def test_under_token_auth_a_proxy_grants_pull_only_and_is_private_or_public(
    distribution_upstream: UpstreamServer, tmp_path: Path,
) -> None:
    from cargohold.auth.access import Access
    from cargohold.auth.jwt import encode, new_claims
    from cargohold.auth.keys import parse_signing_key
    from cargohold.auth.passwords import hash_password
    from tests.auth.world import store_for

    image = distribution_upstream.push_image()
    public = distribution_upstream.push_image()
    name, public_name = f"up/{image.repository}", f"up/{public.repository}"
    data = tmp_path / "cache-data"
    store = store_for(data)
    store.create_user("root", hash_password("root-password-1", 4), superuser=True)
    store.set_public(public_name, True)
    store.close()
    root = ("root", "root-password-1")
    with cache_server(tmp_path, [proxy_entry(distribution_upstream, tmp_path)], "--auth", "token",
                      data=data) as cache:
        # private: anonymous callers are challenged, a user with rights pulls
        assert manifest_get(cache, name, image.tag).status_code == 401
        token, scope = _token(cache, f"repository:{name}:pull,push,delete", root)
        assert scope == f"repository:{name}:pull"  # a superuser too: push and delete are never granted
        bearer = {"Authorization": f"Bearer {token}", "Accept": MANIFEST_ACCEPT}
        served = httpx.get(f"{cache.url}/v2/{name}/manifests/{image.tag}", headers=bearer)
        assert served.status_code == 200 and served.content == image.manifest
        denied = httpx.post(f"{cache.url}/v2/{name}/blobs/uploads/", headers=bearer)
        assert denied.status_code == 403 and error_code(denied) == "DENIED"
        # a token that names push there (signed by the server: issued before the proxy was configured) is
        # not believed on that point
        store = store_for(data)
        generation = store.require("root").credentials_generation
        store.close()
        claims = new_claims(issuer="cargohold", subject="root", audience="cargohold", lifetime=300,
                            accesses=[Access("repository", name, action) for action in ("pull", "push", "delete")],
                            generation=generation)
        pushy = encode(claims, parse_signing_key(cache.token_key_pem(), "the cache's database"))
        for request in (httpx.post, httpx.delete):
            path = "blobs/uploads/" if request is httpx.post else f"manifests/{image.manifest_digest}"
            denied = request(f"{cache.url}/v2/{name}/{path}", headers={"Authorization": f"Bearer {pushy}"})
            assert denied.status_code == 403 and error_code(denied) == "DENIED"
        assert httpx.get(f"{cache.url}/v2/{name}/manifests/{image.tag}",
                         headers={"Authorization": f"Bearer {pushy}", "Accept": MANIFEST_ACCEPT}).status_code == 200
        # public: anonymous pulls
        anonymous, _ = _token(cache, f"repository:{public_name}:pull", None)
        served = httpx.get(f"{cache.url}/v2/{public_name}/manifests/{public.tag}",
                           headers={"Authorization": f"Bearer {anonymous}", "Accept": MANIFEST_ACCEPT})
        assert served.status_code == 200 and served.content == public.manifest
        refused = httpx.post(f"{cache.url}/v2/{public_name}/blobs/uploads/",
                             headers={"Authorization": f"Bearer {anonymous}"})
        assert refused.status_code == 401 and 'error="insufficient_scope"' in refused.headers["www-authenticate"]
        # an ordinary repository: the superuser may push
        _, scope = _token(cache, "repository:team/app:pull,push", root)
        assert scope == "repository:team/app:pull,push"


def test_under_htpasswd_pushing_to_a_proxy_is_denied(distribution_upstream: UpstreamServer, tmp_path: Path) -> None:
    import bcrypt

    (tmp_path / "htpasswd").write_text(f"me:{bcrypt.hashpw(b'pw', bcrypt.gensalt(rounds=4)).decode()}\n")
    with cache_server(tmp_path, [proxy_entry(distribution_upstream, tmp_path)], "--auth", "htpasswd",
                      "--htpasswd", str(tmp_path / "htpasswd")) as cache:
        denied = httpx.post(f"{cache.url}/v2/up/some/repo/blobs/uploads/", auth=("me", "pw"))
        assert denied.status_code == 403 and error_code(denied) == "DENIED"
        assert httpx.post(f"{cache.url}/v2/team/app/blobs/uploads/", auth=("me", "pw")).status_code == 202


def test_a_server_with_a_bad_proxy_configuration_refuses_to_start(tmp_path: Path) -> None:
    config = tmp_path / "bad.yml"
    config.write_text(yaml.safe_dump({"proxies": [{"prefix": "hub", "upstream": "https://a.example",
                                                   "username": "me", "password_file": str(tmp_path / "none")}]}))
    server = CargoholdServer(tmp_path / "data", free_port(), ["--config", str(config)])
    with pytest.raises(RuntimeError):
        server.start()
    assert "proxy 'hub': cannot read password_file" in server.log()



def test_platforms_limit_which_images_of_an_index_are_fetched(
    distribution_upstream: UpstreamServer, shared: CargoholdServer,
) -> None:
    amd64 = distribution_upstream.push_image(tag="amd64")
    arm64 = distribution_upstream.push_image(repository=amd64.repository, tag="arm64")
    index = json.dumps({"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "manifests": [
        {"mediaType": MediaType.OCI_MANIFEST, "digest": image.manifest_digest, "size": len(image.manifest),
         "platform": {"os": "linux", "architecture": architecture}}
        for image, architecture in ((amd64, "amd64"), (arm64, "arm64"))]}).encode()
    with distribution_upstream.client() as client:
        client.put_manifest(Reference(distribution_upstream.host, amd64.repository, tag="multi"), index,
                            MediaType.OCI_INDEX)
    name = f"plat/{amd64.repository}"
    cache = shared
    served = manifest_get(cache, name, "multi")
    assert served.status_code == 200 and served.content == index
    assert manifest_get(cache, name, amd64.manifest_digest).content == amd64.manifest
    refused = manifest_get(cache, name, arm64.manifest_digest)
    assert refused.status_code == 404 and error_code(refused) == "MANIFEST_UNKNOWN"
    assert "linux/amd64" in refused.json()["errors"][0]["message"]
    assert distribution_upstream.gets(amd64.repository, "manifests", arm64.manifest_digest) == 0


def test_a_client_without_manifest_lists_gets_the_lists_linux_amd64_image(
    distribution_upstream: UpstreamServer, shared: CargoholdServer,
) -> None:
    image = distribution_upstream.push_image()
    config, *layers = image.blobs
    docker = json.dumps({
        "schemaVersion": 2, "mediaType": MediaType.DOCKER_MANIFEST,
        "config": {"mediaType": MediaType.DOCKER_CONFIG, "digest": config, "size": len(image.blobs[config])},
        "layers": [{"mediaType": MediaType.DOCKER_LAYER, "digest": layer, "size": len(image.blobs[layer])}
                   for layer in layers],
    }).encode()
    listing = json.dumps({"schemaVersion": 2, "mediaType": MediaType.DOCKER_MANIFEST_LIST, "manifests": [
        {"mediaType": MediaType.DOCKER_MANIFEST, "digest": str(Digest.of(docker)), "size": len(docker),
         "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
    with distribution_upstream.client() as client:
        client.put_manifest(Reference(distribution_upstream.host, image.repository, tag="docker"), docker,
                            MediaType.DOCKER_MANIFEST)
        client.put_manifest(Reference(distribution_upstream.host, image.repository, tag="list"), listing,
                            MediaType.DOCKER_MANIFEST_LIST)
    cache = shared
    served = httpx.get(f"{cache.url}/v2/up/{image.repository}/manifests/list",
                       headers={"Accept": MediaType.DOCKER_MANIFEST})
    assert served.status_code == 200 and served.content == docker
    assert served.headers["docker-content-digest"] == str(Digest.of(docker))
    served = httpx.get(f"{cache.url}/v2/up/{image.repository}/manifests/list",
                       headers={"Accept": MediaType.DOCKER_MANIFEST_LIST})
    assert served.status_code == 200 and served.content == listing


def test_retention_lets_a_proxy_tag_not_pulled_within_ttl_go(
    distribution_upstream: UpstreamServer, tmp_path: Path,
) -> None:
    pulled = distribution_upstream.push_image()
    headed = distribution_upstream.push_image(repository=pulled.repository, tag="v2")
    with cache_server(tmp_path, [proxy_entry(distribution_upstream, tmp_path, ttl="1h")]) as cache:
        assert manifest_get(cache, f"up/{pulled.repository}", pulled.tag).status_code == 200
        # a HEAD caches the tag too, but is no pull
        assert httpx.head(f"{cache.url}/v2/up/{pulled.repository}/manifests/{headed.tag}",
                          headers={"Accept": MANIFEST_ACCEPT}).status_code == 200
    config = next(tmp_path.glob("cache-*.yml"))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["retention", "--config", str(config), "--data-dir", str(cache.data_dir), "--dry-run", "--json"])
    assert code == 0, err.getvalue()
    removals = json.loads(out.getvalue())["would_delete"]
    assert [(r["repository"], r["kind"], r["target"]) for r in removals] == [
        (f"up/{pulled.repository}", "tag", headed.tag)]
