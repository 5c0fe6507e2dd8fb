"""OpenTelemetry tracing on a real server, exported to a real OTLP/HTTP receiver: a request's span named
by its route, with the blob store's operations and the metadata queries as its children; nothing loaded
when tracing is off; the configuration's checks."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cargohold.config import ConfigError, load_config
from tests.api.helpers import OCI_MANIFEST, image_manifest, put_manifest
from tests.support.backends import MATRIX, setup_for
from tests.support.otlp import OtlpReceiver
from tests.support.servers import SRC, cargohold

SERVER = 2  # SpanKind.SERVER in OTLP's numbering (CLIENT is 3)
CLIENT = 3
#: the SDK's batch processor sends what it holds this often (milliseconds; the SDK's own variable)
QUICK_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100"}


@pytest.fixture()
def receiver() -> Iterator[OtlpReceiver]:
    running = OtlpReceiver().start()
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize("backend", MATRIX)
def test_a_manifest_get_is_a_request_span_with_database_and_blob_store_children(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path, receiver: OtlpReceiver) -> None:
    place = setup_for(backend, request)
    env = {**place.env, **QUICK_EXPORT, "CARGOHOLD_TRACING_ENDPOINT": receiver.endpoint,
           "CARGOHOLD_TRACING_SERVICE_NAME": "registry-under-test"}
    with cargohold(tmp_path, "--workers", "1", env=env, database_url=place.database_url) as server, \
            httpx.Client(base_url=server.url) as client:
        raw = image_manifest(client, "traced/app", layers=1)
        assert put_manifest(client, "traced/app", "v1", raw, OCI_MANIFEST).status_code == 201
        r = client.get("/v2/traced/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200 and r.content == raw
        assert client.get("/v2/traced/app/manifests/v2", headers={"Accept": OCI_MANIFEST}).status_code == 404

        get = receiver.wait_for("GET /v2/{name}/manifests/{reference}", **{"http.response.status_code": 200})
        assert get.kind == SERVER and get.parent_id == "" and get.service == "registry-under-test"
        assert get.attributes["http.request.method"] == "GET"
        assert get.attributes["http.route"] == "/v2/{name}/manifests/{reference}"
        # children end before their parent: they are sent in its batch or an earlier one
        queries = [span for span in receiver.children(get) if span.name.startswith("db ")]
        assert queries and all(span.kind == CLIENT for span in queries)
        system = "sqlite" if backend == "sqlite" else "postgresql"
        assert {span.attributes["db.system"] for span in queries} == {system}
        assert any("manifests" in span.attributes["db.query.text"] for span in queries)
        missing = receiver.wait_for("GET /v2/{name}/manifests/{reference}", **{"http.response.status_code": 404})
        assert missing.trace_id != get.trace_id

        # a caller's trace goes on in the registry
        trace, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        assert client.get("/v2/_catalog", headers={"traceparent": f"00-{trace}-{parent}-01"}).status_code == 200
        catalog = receiver.wait_for("GET /v2/_catalog")
        assert (catalog.trace_id, catalog.parent_id) == (trace, parent)

        # a blob push writes to the blob store under its request's span
        push = receiver.wait_for("POST /v2/{name}/blobs/uploads/", **{"http.response.status_code": 201})
        operations = {span.name for span in receiver.children(push)}
        assert {"blobs upload_writer", "blobs upload_commit"} <= operations, operations
        assert any(name.startswith("db ") for name in operations), operations
        assert all(post == "/v1/traces application/x-protobuf" for post in receiver.posts)


def test_a_sample_ratio_of_zero_exports_no_request(tmp_path: Path, receiver: OtlpReceiver) -> None:
    env = {**QUICK_EXPORT, "CARGOHOLD_TRACING_ENDPOINT": receiver.endpoint, "CARGOHOLD_TRACING_SAMPLE_RATIO": "0"}
    with cargohold(tmp_path, "--workers", "1", env=env) as server:
        for _ in range(5):
            assert httpx.get(f"{server.url}/v2/_catalog").status_code == 200
        time.sleep(0.5)  # several export periods
        assert not [name for name in receiver.names() if name.startswith("GET ")]


def test_without_an_endpoint_opentelemetry_is_never_loaded(tmp_path: Path) -> None:
    """The worker's app, built as granian builds it, with tracing off: no opentelemetry module at all."""
    script = (
        "import sys\n"
        "from cargohold.api.server import create_app\n"
        "from cargohold.config import load_config\n"
        f"app = create_app(load_config(None, {{'data_dir': {str(tmp_path / 'data')!r}}}, {{}}))\n"
        "print(type(app).__name__, sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    from cargohold.metadata import migrate

    (tmp_path / "data").mkdir()
    migrate(f"sqlite://{tmp_path / 'data' / 'metadata.db'}")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(SRC)})
    assert out.stdout.split() == ["RegistryApp", "[]"], out.stdout + out.stderr


@pytest.mark.parametrize(("environ", "message"), [
    ({"CARGOHOLD_TRACING_ENDPOINT": "127.0.0.1:4318"}, "tracing.endpoint: cannot use '127.0.0.1:4318'"),
    ({"CARGOHOLD_TRACING_ENDPOINT": "http://127.0.0.1:4318", "CARGOHOLD_TRACING_SAMPLE_RATIO": "1.5"},
     "tracing.sample_ratio: 1.5 is not between 0 and 1"),
    ({"CARGOHOLD_TRACING_SERVICE_NAME": ""}, "tracing.service_name must not be empty"),
])
def test_bad_tracing_settings_are_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(None, {}, environ)


def test_tracing_without_opentelemetry_installed_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ["opentelemetry", *(name for name in sys.modules if name.startswith("opentelemetry."))]:
        monkeypatch.setitem(sys.modules, name, None)  # as if the package were not installed
    with pytest.raises(ConfigError, match=r"OpenTelemetry is not installed: pip install 'cargohold\[tracing\]'"):
        load_config(None, {}, {"CARGOHOLD_TRACING_ENDPOINT": "http://127.0.0.1:4318"})


def test_tracing_settings_come_from_the_file_and_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "server.yml"
    config.write_text(json.dumps({"tracing": {"endpoint": "http://127.0.0.1:4318", "sample_ratio": 0.25}}))
    loaded = load_config(str(config), {}, {"CARGOHOLD_TRACING_SERVICE_NAME": "edge"}).tracing
    assert (loaded.endpoint, loaded.service_name, loaded.sample_ratio) == ("http://127.0.0.1:4318", "edge", 0.25)
    assert load_config(None, {}, {}).tracing.endpoint == ""


def test_with_metrics_on_too_the_store_is_both_traced_and_timed(tmp_path: Path, receiver: OtlpReceiver) -> None:
    from tests.server.test_metrics import TOKEN, metrics_env, scrape, value

    env = {**QUICK_EXPORT, **metrics_env(tmp_path), "CARGOHOLD_TRACING_ENDPOINT": receiver.endpoint}
    with cargohold(tmp_path, "--workers", "1", env=env) as server, httpx.Client(base_url=server.url) as client:
        raw = image_manifest(client, "both/app", layers=1)
        assert put_manifest(client, "both/app", "v1", raw, OCI_MANIFEST).status_code == 201
        push = receiver.wait_for("POST /v2/{name}/blobs/uploads/", **{"http.response.status_code": 201})
        operations = {span.name for span in receiver.children(push)}
        assert {"blobs upload_writer", "blobs upload_commit"} <= operations, operations
        deadline = time.monotonic() + 5
        while (commits := value(scrape(server.url, TOKEN), "cargohold_storage_op_seconds_count",
                                op="upload_commit")) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert commits == 2  # the config and the layer
