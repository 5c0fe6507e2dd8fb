"""The benchmark's ``proxy`` phase: ``python -m bench --quick --phases proxy``, tiny sizes, one run.

Not a timed test: it checks that the phase measures all six pulls, that nginx's reference relays do what they are
said to (one stores each blob it relays, the other stores nothing), and that the upstream served each blob once
for the cold pull and none for the warm one (``bench/proxy.py`` raises otherwise), not how big the numbers are.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.requirements import requires_tool

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.run import Results  # noqa: E402
from bench.servers import Server  # noqa: E402

from bench import images, proxy  # noqa: E402

pytestmark = [requires_tool(tool) for tool in ("docker-registry", "wrk", "hey", "nginx")]  # checked by bench/run.py


@pytest.fixture()
def upstream(tmp_path: Path) -> Iterator[Server]:
    server = Server(proxy.UPSTREAM, tmp_path / "upstream").start()
    try:
        yield server
    finally:
        server.cleanup()


def test_upstream_gets_counts_what_the_upstream_served(upstream: Server) -> None:
    with upstream.connection() as conn:
        blob = images.push_blob_bytes(conn, proxy.IMAGE, b"counted")
        other = images.push_blob_bytes(conn, "bench/other", b"not counted")
        before = proxy.upstream_gets(upstream)
        for _ in range(2):
            assert conn.request("GET", f"/v2/{proxy.IMAGE}/blobs/{blob.digest}").status == 200
        conn.request("HEAD", f"/v2/{proxy.IMAGE}/blobs/{blob.digest}")  # a HEAD is no pull
        assert conn.request("GET", f"/v2/{proxy.IMAGE}/blobs/sha256:{'0' * 64}").status == 404  # nor a 404
        assert conn.request("GET", f"/v2/bench/other/blobs/{other.digest}").status == 200  # another repository
    assert proxy.upstream_gets(upstream) - before == {("blobs", blob.digest): 2}


def test_proxy_config_names_the_upstream(tmp_path: Path, upstream: Server) -> None:
    args = proxy.proxy_config(tmp_path / "proxy.json", upstream)
    assert args[0] == "--config"
    assert json.loads(Path(args[1]).read_text()) == {
        "proxies": [{"prefix": "up", "upstream": f"http://{upstream.address}", "revalidate": "5m"}]}


@pytest.mark.parametrize("storing", [False, True], ids=["relaying", "relaying-and-storing"])
def test_the_nginx_reference_relays_the_upstream_and_stores_blobs_only_when_told(
    tmp_path: Path, upstream: Server, storing: bool,
) -> None:
    store = tmp_path / "store"
    relay = Server(proxy.NGINX, tmp_path / "relay", nginx_sites=proxy.nginx_sites(upstream, store if storing else None))
    content = bytes(range(256)) * 4096
    with upstream.connection() as conn:
        blob = images.push_blob_bytes(conn, proxy.IMAGE, content)
    relay.start()
    try:
        with relay.connection() as conn:
            got = conn.request("GET", f"/v2/{proxy.IMAGE}/blobs/{blob.digest}")
            assert (got.status, got.body) == (200, content)
            assert conn.request("GET", f"/v2/{proxy.IMAGE}/blobs/sha256:{'0' * 64}").status == 404
    finally:
        relay.cleanup()
    assert proxy.upstream_gets(upstream)[("blobs", blob.digest)] == 1
    kept = [path for path in store.rglob("*") if path.is_file()]
    if storing:
        assert [(path.name, path.read_bytes() == content) for path in kept] == [(blob.digest, True)]
    else:
        assert kept == []


def test_render_gives_each_ratio_against_its_target() -> None:
    results = Results()
    for which, seconds in ((proxy.STRAIGHT, 2.0), (proxy.COLD, 3.0), (proxy.WARM, 1.05), (proxy.DIRECT, 1.0),
                           (proxy.RELAY, 2.2), (proxy.RELAY_STORE, 2.6)):
        results.add("proxy", "pull_s", which, seconds)
        results.add("proxy", "pull_mbps", which, 100 / seconds)
    results.notes["proxy"] = {"layers": 4, "layer_bytes": 1 << 20, "puller": "cargohold"}
    assert proxy.ratios(results) == pytest.approx({
        f"{proxy.COLD} / {proxy.STRAIGHT}": 1.5, f"{proxy.WARM} / {proxy.DIRECT}": 1.05,
        f"{proxy.RELAY} / {proxy.STRAIGHT}": 1.1, f"{proxy.RELAY_STORE} / {proxy.STRAIGHT}": 1.3})
    text = "\n".join(proxy.render(results))
    assert f"| {proxy.COLD} | 3.00 s | 33.3 MB/s | 1.50× | ≤ 1.3× {proxy.STRAIGHT} | **not met** |" in text
    assert f"| {proxy.WARM} | 1.05 s | 95.2 MB/s | 1.05× | ≤ 1.1× {proxy.DIRECT} | met |" in text
    assert f"| {proxy.RELAY_STORE} | 2.60 s | 38.5 MB/s | 1.30× | (reference: × {proxy.STRAIGHT}) |  |" in text


def test_quick_proxy_phase_reports_every_pull(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--phases", "proxy", "--json", str(out),
         "--workdir", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    samples = json.loads(out.read_text())["samples"]["proxy"]
    everything = {proxy.STRAIGHT, proxy.COLD, proxy.WARM, proxy.DIRECT, proxy.RELAY, proxy.RELAY_STORE}
    for metric in ("pull_s", "pull_mbps"):
        assert set(samples[metric]) == everything, metric
        assert all(v > 0 for values in samples[metric].values() for v in values), metric
    assert "| cache, warm |" in done.stdout and "≤ 1.3× straight from upstream" in done.stdout
    assert "| nginx relaying and storing |" in done.stdout
    assert not any((tmp_path / "work").glob("**/layer-*")), "the image's files are removed"
    assert not (tmp_path / "work" / "proxy" / "nginx-store").exists(), "what nginx stored is removed"
