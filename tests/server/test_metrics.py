"""``GET /metrics`` on real servers with two workers: counts summed over the workers that match the requests
sent, route templates as labels, the bearer token or the listener of its own, the multiprocess directory's
life, and scrapes that stay fast after a thousand workers' files."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families

from cargohold.cli.main import main
from cargohold.config import ConfigError, load_config
from cargohold.metrics.directory import directory_for
from tests.api.helpers import OCI_MANIFEST, codes, image_manifest, push_blob, put_manifest, sha256
from tests.support.backends import MATRIX, setup_for
from tests.support.postgres import start_cluster
from tests.support.servers import SRC, CargoholdServer, cargohold, free_port
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import delivery_rows, push_event, record, serving, wait_until

TOKEN = "scrape-token-1"
MANIFEST_ROUTE = "/v2/{name}/manifests/{reference}"
#: every route label the registry's own routes may give (the token and admin routes are not on these servers)
TEMPLATES = {"/v2/", "/v2/_catalog", "/v2/{name}/tags/list", MANIFEST_ROUTE, "/v2/{name}/blobs/uploads/{uuid}",
             "/v2/{name}/blobs/uploads/", "/v2/{name}/blobs/{digest}", "/v2/{name}/referrers/{digest}", "/healthz",
             "/readyz", "/metrics", "other"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metrics_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    token_file = tmp_path / "metrics-token"
    token_file.write_text(TOKEN + "\n")
    return {"CARGOHOLD_METRICS_ENABLED": "true", "CARGOHOLD_METRICS_TOKEN_FILE": str(token_file), **extra}


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(url: str, token: str | None = TOKEN) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.get(f"{url}/metrics", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(r.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests_of(samples: Samples, method: str, route: str, code: int) -> float:
    return value(samples, "cargohold_http_requests_total", method=method, route=route, code=str(code))


def worker_pids(directory: str) -> set[str]:
    return {name.removesuffix(".db").rsplit("_", 1)[1] for name in os.listdir(directory)
            if name.startswith("counter_") and name != "counter_archive.db"}


def settled(url: str, check: Callable[[Samples], bool], timeout: float = 5.0) -> Samples:
    """A scrape once every count of the requests answered so far is written: ``check(samples)`` holds, and then
    each worker has flushed a few times more (every 50 ms)."""
    deadline = time.monotonic() + timeout
    while not check(scrape(url)) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.25)
    return scrape(url)


@pytest.mark.parametrize("backend", MATRIX)
def test_counts_over_both_workers_match_the_requests_sent(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    place = setup_for(backend, request)
    with cargohold(tmp_path, "--workers", "2", env={**place.env, **metrics_env(tmp_path)},
                   database_url=place.database_url) as server:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            raw = image_manifest(c, "team/app", layers=1, seed=backend)
            assert put_manifest(c, "team/app", "v1", raw, OCI_MANIFEST).status_code == 201
        before = scrape(server.url)
        gets, missing, unrouted = 60, 9, 7

        def get(path: str) -> int:
            return httpx.get(f"{server.url}{path}", headers={"Accept": OCI_MANIFEST}, timeout=30).status_code

        # new connections from several threads: both workers serve some
        paths = ["/v2/team/app/manifests/v1"] * gets + [f"/v2/team/other{i}/manifests/v1" for i in range(missing)] \
            + [f"/nowhere/{i}" for i in range(unrouted)]
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(get, paths))
        assert statuses == [200] * gets + [404] * (missing + unrouted)
        assert len(worker_pids(directory_for(server.port, str(server.data_dir)))) == 2

        after = settled(server.url, lambda s: requests_of(s, "GET", "other", 404) == unrouted)
        assert requests_of(after, "GET", MANIFEST_ROUTE, 200) - requests_of(before, "GET", MANIFEST_ROUTE, 200) == gets
        assert requests_of(after, "GET", MANIFEST_ROUTE, 404) == missing
        assert requests_of(after, "GET", "other", 404) == unrouted
        assert requests_of(after, "PUT", MANIFEST_ROUTE, 201) == 1
        assert requests_of(after, "GET", "/metrics", 200) >= 1  # the scrapes before this one
        routes = {dict(labels)["route"] for name, labels in after if name == "cargohold_http_requests_total"}
        assert routes <= TEMPLATES and "team/app" not in str(after)

        duration = "cargohold_http_request_duration_seconds"
        manifest_gets = requests_of(after, "GET", MANIFEST_ROUTE, 200) + missing
        assert value(after, f"{duration}_count", method="GET", route=MANIFEST_ROUTE) == manifest_gets
        assert value(after, f"{duration}_bucket", method="GET", route=MANIFEST_ROUTE, le="+Inf") == manifest_gets
        assert 0 < value(after, f"{duration}_sum", method="GET", route=MANIFEST_ROUTE) < manifest_gets * 5
        assert value(after, "cargohold_http_request_bytes_total", method="PUT", route=MANIFEST_ROUTE) == len(raw)
        sent = value(after, "cargohold_http_response_bytes_total", method="GET", route=MANIFEST_ROUTE) \
            - value(before, "cargohold_http_response_bytes_total", method="GET", route=MANIFEST_ROUTE)
        assert sent >= gets * len(raw)

        # what the push did to the database and the blob store
        assert value(after, "cargohold_db_query_seconds_count") > 0
        assert value(after, "cargohold_storage_op_seconds_count", op="upload_commit") == 2  # config and layer
        assert value(after, "cargohold_storage_errors_total", op="upload_commit") == 0
        assert value(after, "cargohold_uploads_in_progress") == 0
        assert value(after, "cargohold_webhook_backlog") == 0


def test_the_bearer_token_guards_metrics_on_the_main_port(tmp_path: Path) -> None:
    with cargohold(tmp_path, "--workers", "2", env=metrics_env(tmp_path)) as server:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                        {"Authorization": f"Bearer {TOKEN}x"}):
            r = httpx.get(f"{server.url}/metrics", headers=headers)
            assert r.status_code == 401 and codes(r) == ["UNAUTHORIZED"], headers
            assert r.headers["www-authenticate"] == 'Bearer realm="metrics"'
            assert "cargohold_http_requests_total" not in r.text
        assert httpx.post(f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 405
        samples = settled(server.url, lambda s: requests_of(s, "GET", "/metrics", 401) == 4)
        assert requests_of(samples, "GET", "/metrics", 401) == 4


def test_metrics_on_a_listener_of_their_own(tmp_path: Path) -> None:
    port = free_port()
    env = {"CARGOHOLD_METRICS_ENABLED": "true", "CARGOHOLD_METRICS_LISTEN": f"127.0.0.1:{port}"}
    with cargohold(tmp_path, "--workers", "2", env=env) as server:
        metrics_url = f"http://127.0.0.1:{port}"
        r = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 404 and codes(r) == ["NOT_FOUND"]
        deadline = time.monotonic() + 10
        while True:  # the listener starts beside the workers
            try:
                scrape(metrics_url, token=None)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the metrics listener did not answer"
                time.sleep(0.1)
        before = requests_of(settled(metrics_url, lambda s: True), "GET", "/v2/", 200)
        for _ in range(5):
            assert httpx.get(f"{server.url}/v2/").status_code == 200
        samples = settled(metrics_url, lambda s: requests_of(s, "GET", "/v2/", 200) >= before + 5)
        assert requests_of(samples, "GET", "/v2/", 200) == before + 5
        assert requests_of(samples, "GET", "other", 404) == 1  # /metrics on the main port: no route
        assert httpx.get(f"{metrics_url}/v2/").status_code == 404
        assert httpx.post(f"{metrics_url}/metrics").status_code == 405
        assert f"metrics on http://127.0.0.1:{port}/metrics" in server.log()
        listener_log = server.log()
    assert "Traceback" not in listener_log
    with pytest.raises(httpx.TransportError):  # stopped with the server
        httpx.get(f"{metrics_url}/metrics", timeout=2)


def test_disabled_metrics_have_no_route_and_no_directory(tmp_path: Path) -> None:
    with cargohold(tmp_path, "--workers", "2") as server:
        r = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 404 and codes(r) == ["NOT_FOUND"]
        assert not os.path.exists(directory_for(server.port, str(server.data_dir)))


def _write(path: str, key: str, amount: float) -> None:
    values = MmapedDict(path)
    try:
        values.write_value(key, amount, 0.0)
    finally:
        values.close()


_REQUESTS = ("cargohold_http_requests", "cargohold_http_requests_total", ["method", "route", "code"])
_UPLOADS = ("cargohold_uploads_in_progress", "cargohold_uploads_in_progress", [])


def _key(family: tuple[str, str, list[str]], *labels: str) -> str:
    return mmap_key(family[0], family[1], family[2], list(labels), "")


def test_the_directory_is_wiped_at_start_and_removed_at_stop(tmp_path: Path) -> None:
    # the server's port is in its directory's name: take one and leave a stale run's files there
    server = CargoholdServer(tmp_path / "data", free_port(), ["--workers", "2"], metrics_env(tmp_path))
    directory = directory_for(server.port, str(server.data_dir))
    os.makedirs(directory, exist_ok=True)
    _write(os.path.join(directory, "counter_archive.db"), _key(_REQUESTS, "GET", "/v2/", "200"), 1000.0)
    _write(os.path.join(directory, "counter_1.db"), _key(_REQUESTS, "GET", "/v2/", "200"), 500.0)
    try:
        server.start()
        assert httpx.get(f"{server.url}/v2/").status_code == 200
        samples = settled(server.url, lambda s: requests_of(s, "GET", "/v2/", 200) >= 2)
        assert requests_of(samples, "GET", "/v2/", 200) == 2  # the start's check and this one; none of before
        assert not os.path.exists(os.path.join(directory, "counter_1.db"))
    finally:
        server.stop()
    assert not os.path.exists(directory)


def _dead_pids(count: int) -> list[int]:
    """PIDs no process can have: above the kernel's largest."""
    with open("/proc/sys/kernel/pid_max") as f:
        top = int(f.read())
    return list(range(top + 1, top + 1 + count))


@pytest.fixture()
def metered(tmp_path: Path) -> Iterator[CargoholdServer]:
    with cargohold(tmp_path, "--workers", "2", env=metrics_env(tmp_path)) as server:
        yield server


def test_a_thousand_dead_workers_are_folded_and_scrapes_stay_fast(metered: CargoholdServer) -> None:
    server = metered
    directory = directory_for(server.port, str(server.data_dir))
    for _ in range(3):
        assert httpx.get(f"{server.url}/v2/").status_code == 200
    served = requests_of(settled(server.url, lambda s: requests_of(s, "GET", "/v2/", 200) >= 3), "GET", "/v2/", 200)
    # what a thousand ended workers would have left: a request each, and an upload each in progress when
    # it ended (a live gauge: a dead process's part of it goes)
    dead = _dead_pids(1000)
    for pid in dead:
        _write(os.path.join(directory, f"counter_{pid}.db"), _key(_REQUESTS, "GET", "/v2/", "200"), 1.0)
        _write(os.path.join(directory, f"gauge_livesum_{pid}.db"), _key(_UPLOADS), 1.0)
    assert len(os.listdir(directory)) > 2000

    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as c:
        started = time.perf_counter()
        folded = parse(c.get("/metrics").text)
        folding = time.perf_counter() - started
        assert requests_of(folded, "GET", "/v2/", 200) == served + 1000
        assert value(folded, "cargohold_uploads_in_progress") == 0
        files = os.listdir(directory)
        assert not any(str(pid) in name for name in files for pid in dead[:1] + dead[-1:])
        assert len(files) <= 10, files

        times = []
        for _ in range(7):
            started = time.perf_counter()
            samples = parse(c.get("/metrics").text)
            times.append(time.perf_counter() - started)
            assert requests_of(samples, "GET", "/v2/", 200) == served + 1000
        assert statistics.median(times) < 0.05, (times, folding)
        assert folding < 0.5, folding

        # more workers end: their counts are added to the archive's
        for pid in dead[:10]:
            _write(os.path.join(directory, f"counter_{pid}.db"), _key(_REQUESTS, "GET", "/v2/", "200"), 2.0)
        assert requests_of(parse(c.get("/metrics").text), "GET", "/v2/", 200) == served + 1020


@pytest.mark.parametrize(("environ", "message"), [
    ({}, "metrics: set either token_file (a bearer token on the main port) or listen (an address of its own), "
         "not both or neither"),
    ({"CARGOHOLD_METRICS_TOKEN_FILE": "/t", "CARGOHOLD_METRICS_LISTEN": "127.0.0.1:9102"}, "not both or neither"),
    ({"CARGOHOLD_METRICS_LISTEN": "9102"}, "metrics.listen must be HOST:PORT, not '9102'"),
    ({"CARGOHOLD_METRICS_LISTEN": "127.0.0.1:http"}, "metrics.listen must be HOST:PORT"),
])
def test_contradictory_metrics_settings_are_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, {}, {"CARGOHOLD_METRICS_ENABLED": "yes", **environ})
    # off, the other settings are not looked at
    assert not load_config(None, {}, environ).metrics.enabled


def test_an_unreadable_token_file_stops_serve_in_one_line_and_leaves_no_directory(tmp_path: Path) -> None:
    port = free_port()
    missing = tmp_path / "no-such-token"
    (tmp_path / "empty-token").write_text("\n")
    for token_file, why in ((missing, "No such file or directory"), (tmp_path / "empty-token", "is empty")):
        environ = {**os.environ, "PYTHONPATH": str(SRC), "CARGOHOLD_METRICS_ENABLED": "1",
                   "CARGOHOLD_METRICS_TOKEN_FILE": str(token_file)}
        result = subprocess.run(
            [sys.executable, "-m", "cargohold.cli.main", "serve", "--listen", f"127.0.0.1:{port}", "--data-dir",
             str(tmp_path / "data")], capture_output=True, text=True, env=environ, timeout=60)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("cargohold: metrics.token_file: ") and why in result.stderr
        assert len(result.stderr.splitlines()) == 1
        assert not os.path.exists(directory_for(port, str(tmp_path / "data")))


FAST_ENV = {"CARGOHOLD_PASSWORD_COST": "4"}


def _add_superuser(data_dir: Path, name: str, password: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), mock.patch.dict(os.environ, FAST_ENV), \
            mock.patch("sys.stdin", io.StringIO(password + "\n")):
        assert main(["admin", "--data-dir", str(data_dir), "user", "add", name, "--superuser",
                     "--password-stdin"]) == 0, err.getvalue()


def test_tokens_login_failures_and_collections_are_counted(tmp_path: Path) -> None:
    _add_superuser(tmp_path / "data", "root", "root-password-1")
    env = {**FAST_ENV, **metrics_env(tmp_path), "CARGOHOLD_GC_ENABLED": "false", "CARGOHOLD_GC_GRACE_PERIOD": "0"}
    with cargohold(tmp_path, "--workers", "2", "--auth", "token", env=env) as server:
        token_url = f"{server.url}/auth/token"
        for password in ("wrong-1", "wrong-2"):
            assert httpx.get(token_url, auth=("root", password), params={"service": "cargohold"}).status_code == 401
        assert httpx.get(token_url, params={"service": "other"}).status_code == 400  # a refusal, not a login
        r = httpx.get(token_url, auth=("root", "root-password-1"),
                      params={"service": "cargohold", "scope": "repository:junk/app:pull,push"})
        assert r.status_code == 200
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {r.json()['token']}"}) as c:
            push_blob(c, "junk/app", os.urandom(5000))  # nothing will reference it
        admin = {"auth": ("root", "root-password-1"), "timeout": 30}
        assert httpx.post(f"{server.url}/admin/v1/gc", json={"dry_run": True}, **admin).status_code == 200
        assert httpx.patch(f"{server.url}/admin/v1/users/nobody", json={}, **admin).status_code == 404
        report = httpx.post(f"{server.url}/admin/v1/gc", json={}, **admin)
        assert report.status_code == 200 and report.json()["bytes_freed"] == 5000

        samples = settled(server.url, lambda s: value(s, "cargohold_gc_runs_total") == 1)
        assert value(samples, "cargohold_tokens_total", outcome="issued") == 1
        assert value(samples, "cargohold_tokens_total", outcome="refused") == 3
        assert value(samples, "cargohold_login_failures_total") == 2
        assert value(samples, "cargohold_gc_runs_total") == 1  # the dry run is not one
        assert value(samples, "cargohold_gc_bytes_freed_total") == 5000
        assert requests_of(samples, "POST", "/admin/v1/gc", 200) == 2  # the admin API's routes by template too
        assert requests_of(samples, "PATCH", "/admin/v1/users/{account}", 404) == 1
        assert requests_of(samples, "GET", "/auth/token", 401) == 2
        assert requests_of(samples, "GET", "/auth/token", 400) == 1


def test_webhook_deliveries_by_outcome_and_the_backlog(tmp_path: Path) -> None:
    receiver = Receiver(statuses=[500]).start()  # fails once, then takes it
    endpoints = [
        {"name": "hook", "url": receiver.url, "backoff": "50ms"},
        {"name": "gone", "url": f"http://127.0.0.1:{free_port()}/hook", "max_attempts": 1},
        {"name": "later", "url": f"http://127.0.0.1:{free_port()}/hook", "backoff": "1h"},
    ]
    try:
        token_file = metrics_env(tmp_path)["CARGOHOLD_METRICS_TOKEN_FILE"]
        sections = {"metrics": {"enabled": True, "token_file": token_file}}
        with serving(tmp_path, endpoints, "--workers", "2", sections=sections) as server:
            record(server.data_dir, endpoints, push_event())
            wait_until(lambda: sorted(r["state"] for r in delivery_rows(server.data_dir)) == [
                "dead", "delivered", "pending"] and all(r["attempts"] for r in delivery_rows(server.data_dir)))
            samples = settled(server.url, lambda s: value(s, "cargohold_webhook_deliveries_total",
                                                           outcome="delivered") == 1)
            assert value(samples, "cargohold_webhook_deliveries_total", outcome="delivered") == 1
            assert value(samples, "cargohold_webhook_deliveries_total", outcome="failed") == 2  # hook once, later
            assert value(samples, "cargohold_webhook_deliveries_total", outcome="dead") == 1
            assert value(samples, "cargohold_webhook_backlog") == 1  # later's, waiting for its hour
    finally:
        receiver.stop()


def test_pull_through_upstream_requests_and_cache_hits(tmp_path: Path) -> None:
    (tmp_path / "up").mkdir()
    (tmp_path / "cache").mkdir()
    with cargohold(tmp_path / "up", "--workers", "1") as upstream:
        with httpx.Client(base_url=upstream.url, timeout=30) as c:
            raw = image_manifest(c, "team/app", layers=1, seed="proxy")
            assert put_manifest(c, "team/app", "v1", raw, OCI_MANIFEST).status_code == 201
        config = tmp_path / "cache.yml"
        config.write_text(json.dumps({"proxies": [{"prefix": "up", "upstream": upstream.url}]}))
        with cargohold(tmp_path / "cache", "--workers", "2", "--config", str(config),
                       env=metrics_env(tmp_path)) as cache:
            layer = json.loads(raw)["layers"][0]["digest"]
            with httpx.Client(base_url=cache.url, timeout=30, headers={"Accept": OCI_MANIFEST}) as c:
                for _ in range(2):  # fetched, then served from the cache
                    assert c.get(f"/v2/up/team/app/manifests/{sha256(raw)}").content == raw
                    assert c.get(f"/v2/up/team/app/blobs/{layer}").status_code == 200
                missing = c.get(f"/v2/up/team/app/manifests/sha256:{'0' * 64}")
                assert missing.status_code == 404 and codes(missing) == ["MANIFEST_UNKNOWN"]
            samples = settled(cache.url, lambda s: value(s, "cargohold_proxy_upstream_requests_total", code="404") == 1)
            assert value(samples, "cargohold_proxy_cache_total", result="hit") == 2
            assert value(samples, "cargohold_proxy_cache_total", result="miss") == 3
            assert value(samples, "cargohold_proxy_upstream_requests_total", code="2xx") == 2
            assert value(samples, "cargohold_proxy_upstream_requests_total", code="404") == 1


def test_a_scrape_while_postgresql_is_down_answers_without_the_backlog(tmp_path: Path) -> None:
    cluster = start_cluster(Path(tempfile.mkdtemp(prefix="cargohold-pg-")))
    try:
        with cargohold(tmp_path, "--workers", "1", database_url=cluster.fresh_database(),
                       env=metrics_env(tmp_path)) as server:
            assert httpx.get(f"{server.url}/v2/").status_code == 200
            cluster.halt()
            started = time.monotonic()
            samples = scrape(server.url)  # the first scrape: the backlog is counted now, and cannot be
            assert time.monotonic() - started < 4  # not the pool's wait for a connection (10 s)
            assert not any(name == "cargohold_webhook_backlog" for name, _ in samples)
            assert requests_of(samples, "GET", "/v2/", 200) == 2  # the start's check and this test's
            assert "counting the webhook backlog failed" in server.log()
            cluster.start()  # a stop writes what the worker holds (pull times)
    finally:
        cluster.stop()


def test_a_metrics_port_in_use_stops_serve_before_it_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        environ = {**os.environ, "PYTHONPATH": str(SRC), "CARGOHOLD_METRICS_ENABLED": "1",
                   "CARGOHOLD_METRICS_LISTEN": f"127.0.0.1:{port}"}
        result = subprocess.run(
            [sys.executable, "-m", "cargohold.cli.main", "serve", "--listen", f"127.0.0.1:{free_port()}",
             "--data-dir", str(tmp_path / "data")], capture_output=True, text=True, env=environ, timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"cargohold: port {port} is already in use (127.0.0.1:{port})"]
    assert not (tmp_path / "data").exists()  # stopped before anything was written


def test_an_upload_sending_its_body_is_in_progress_until_it_ends(metered: CargoholdServer) -> None:
    server = metered
    start = httpx.post(f"{server.url}/v2/team/app/blobs/uploads/")
    assert start.status_code == 202
    release = threading.Event()

    def body() -> Iterator[bytes]:
        yield b"x" * 1000
        release.wait(10)
        yield b"y" * 1000

    with ThreadPoolExecutor(1) as pool:
        patch = pool.submit(httpx.patch, f"{server.url}{start.headers['location']}", content=body(), timeout=30)
        during = settled(server.url, lambda s: value(s, "cargohold_uploads_in_progress") == 1)
        release.set()
        assert patch.result().status_code == 202
    after = settled(server.url, lambda s: value(s, "cargohold_uploads_in_progress") == 0)
    assert value(during, "cargohold_uploads_in_progress") == 1
    assert value(after, "cargohold_uploads_in_progress") == 0
    assert value(after, "cargohold_http_request_bytes_total", method="PATCH",
                 route="/v2/{name}/blobs/uploads/{uuid}") == 2000  # a chunked body, counted as read
