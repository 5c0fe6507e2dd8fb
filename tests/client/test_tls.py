"""TLS: cargohold over HTTPS with a test CA, verification on and off, client certificates,
and the HTTPS -> HTTP fallback for insecure and loopback registries."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from cargohold.client import (
    OCILayout,
    Reference,
    RegistryClient,
    StaticKeychain,
    TLSError,
    TransportError,
    TransportOptions,
    pull,
)
from cargohold.client.cache import BlobCache
from cargohold.client.direct import BodyReader
from cargohold.client.keychain import Credentials
from cargohold.client.transport import Fallback, endpoint_policy, speaks_tls

from .cli_support import isolated, run  # noqa: F401 - isolated is an autouse fixture
from .conftest import RunningRegistry, free_port
from .images import build_image, write_layout
from .tlsfiles import TLSFiles

ANONYMOUS = StaticKeychain(Credentials(), registries=[])


def client_for(**options: object) -> RegistryClient:
    return RegistryClient(keychain=ANONYMOUS, options=TransportOptions(retries=1, backoff=0.01, **options))  # type: ignore[arg-type]


def test_ca_cert_verifies_the_registry(
    tls_registry: RunningRegistry, tls_files: TLSFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = build_image((1000,))
    write_layout(tmp_path / "src", image, "v1")
    ref = tls_registry.ref(tls_registry.repo("tls"), "v1")
    code, out, err = run(
        capsys, "push", f"oci:{tmp_path / 'src'}:v1", ref, "--ca-cert", str(tls_files.ca_cert), "--json"
    )
    assert code == 0, err
    assert json.loads(out)["digest"] == str(image.digest)
    with client_for(ca_bundle=str(tls_files.ca_cert)) as client:
        assert client.get_manifest(Reference.parse(ref)).digest == image.digest
        assert client.base_url(tls_registry.host) == f"https://{tls_registry.host}"  # no fallback to HTTP


def test_tls_verify_false_and_insecure_registry_skip_verification(
    tls_registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = build_image((500,))
    write_layout(tmp_path / "src", image, "v1")
    ref = tls_registry.ref(tls_registry.repo("noverify"), "v1")
    code, _, err = run(capsys, "push", f"oci:{tmp_path / 'src'}:v1", ref, "--tls-verify=false")
    assert code == 0, err
    code, out, err = run(capsys, "digest", ref, "--insecure-registry", tls_registry.host)
    assert code == 0 and out.strip() == str(image.digest), err
    with client_for(insecure_registries=frozenset({tls_registry.host})) as client:
        client.ping(tls_registry.host)
        assert client.base_url(tls_registry.host).startswith("https://")  # HTTPS still, just unverified


@pytest.mark.parametrize("trust", ["ca-cert", "insecure"])
def test_blob_bodies_take_the_fast_path_over_tls(
    trust: str,
    tls_registry: RunningRegistry,
    tls_files: TLSFiles,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = build_image((1000, 300_000))
    write_layout(tmp_path / "src", image, "v1")
    ref = tls_registry.ref(tls_registry.repo("fast"), "v1")
    code, _, err = run(capsys, "push", f"oci:{tmp_path / 'src'}:v1", ref, "--tls-verify=false")
    assert code == 0, err
    options = (
        {"ca_bundle": str(tls_files.ca_cert)}
        if trust == "ca-cert"
        else {"insecure_registries": frozenset({tls_registry.host})}
    )
    with client_for(**options) as client:
        taken: list[str] = []
        direct_get = client.direct.get

        def record(url: str, headers: Mapping[str, str]) -> BodyReader | None:
            body = direct_get(url, headers)
            if body is not None:
                taken.append(url)
            return body

        monkeypatch.setattr(client.direct, "get", record)
        layout = OCILayout(tmp_path / "dst")
        pull(client, Reference.parse(ref), layout, tag="v1", cache=BlobCache(tmp_path / "cache"))
    assert len(taken) == len(image.blobs) and all(url.startswith("https://") for url in taken)
    assert all(layout.blob_path(d).read_bytes() == data for d, data in image.blobs.items())


def test_untrusted_certificate_fails_with_a_clear_error(
    tls_registry: RunningRegistry, tls_files: TLSFiles, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = tls_registry.ref(tls_registry.repo("untrusted"), "v1")
    for extra in ([], ["--ca-cert", str(tls_files.other_ca_cert)]):
        started = time.monotonic()
        code, out, err = run(capsys, "tags", ref, *extra)
        assert code == 1 and out == ""
        assert err.startswith("cargohold: error: ") and err.count("\n") == 1 and "Traceback" not in err
        assert "certificate not trusted" in err and "--ca-cert" in err
        assert time.monotonic() - started < 5  # a bad certificate is not retried
    with client_for() as client, pytest.raises(TLSError, match="CERTIFICATE_VERIFY_FAILED"):
        client.tags(Reference.parse(ref))


@pytest.fixture
def mtls_server(tls_files: TLSFiles) -> Iterator[str]:
    """A plain Python ``ssl`` server that speaks just enough of the API, and demands a client certificate."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = json.dumps({"repositories": ["mtls/ok"]} if self.path.startswith("/v2/_catalog") else {})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files.server_cert, tls_files.server_key)
    context.load_verify_locations(tls_files.ca_cert)
    context.verify_mode = ssl.CERT_REQUIRED
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_client_certificate_is_presented(
    mtls_server: str, tls_files: TLSFiles, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = ["--ca-cert", str(tls_files.ca_cert)]
    code, _, err = run(capsys, "catalog", mtls_server, *ca)
    assert code == 1 and "client certificate" in err and err.count("\n") == 1
    code, out, err = run(
        capsys, "catalog", mtls_server, *ca, "--cert", str(tls_files.client_cert), "--key", str(tls_files.client_key)
    )
    assert code == 0 and out.split() == ["mtls/ok"], err
    # with verification off, the client certificate is still sent
    with client_for(verify_tls=False, client_cert=(str(tls_files.client_cert), str(tls_files.client_key))) as c:
        assert c.get_repositories(mtls_server) == ["mtls/ok"]


def test_loopback_and_insecure_registries_fall_back_to_plain_http(registry: RunningRegistry) -> None:
    with client_for() as client:
        client.ping(registry.host)
        assert client.base_url(registry.host) == f"http://{registry.host}"
    assert endpoint_policy(registry.host, TransportOptions()) is Fallback.NO_TLS
    assert endpoint_policy("reg.example", TransportOptions()) is Fallback.NEVER
    assert endpoint_policy("reg.example", TransportOptions(insecure_registries=frozenset({"reg.example"}))) is (
        Fallback.ANY
    )
    assert endpoint_policy("reg.example", TransportOptions(verify_tls=False)) is Fallback.ANY


def test_a_bare_handshake_tells_a_loopback_registry_that_speaks_only_http(
    registry: RunningRegistry, tls_registry: RunningRegistry
) -> None:
    assert speaks_tls(tls_registry.host, 5.0) is True
    assert speaks_tls(registry.host, 5.0) is False
    assert speaks_tls(f"127.0.0.1:{free_port()}", 5.0) is None  # nothing listening: the usual path reports it
    seen: list[str] = []
    with client_for() as client:
        client.http.event_hooks["request"].append(lambda request: seen.append(request.url.scheme))
        client.ping(registry.host)
    assert seen == ["http"]  # no HTTPS attempt, so no verifying TLS context was built


def scripted(https_error: str, seen: list[str]) -> httpx.MockTransport:
    """HTTPS fails with ``https_error``; plain HTTP answers like a registry."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.scheme} {request.url.path}")
        if request.url.scheme == "https":
            raise httpx.ConnectError(https_error, request=request)
        if request.url.path == "/v2/":
            return httpx.Response(200, json={})
        return httpx.Response(200, json={"name": "team/app", "tags": ["v1"]})

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    ("host", "insecure", "error", "falls_back"),
    [
        ("reg.example", True, "[SSL: WRONG_VERSION_NUMBER] wrong version number", True),
        ("reg.example", True, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", True),
        ("reg.example", True, "[Errno 111] Connection refused", True),
        ("reg.example", False, "[SSL: WRONG_VERSION_NUMBER] wrong version number", False),
        ("localhost:5999", False, "[SSL: WRONG_VERSION_NUMBER] wrong version number", True),
        ("localhost:5999", False, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", False),
        ("localhost:5999", False, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] alert", False),
    ],
)
def test_fallback_rules(host: str, insecure: bool, error: str, falls_back: bool) -> None:
    seen: list[str] = []
    options = {"insecure_registries": frozenset({host})} if insecure else {}
    with client_for(**options) as client:
        client.http = httpx.Client(transport=scripted(error, seen))
        ref = Reference.parse(f"{host}/team/app")
        if falls_back:
            assert client.tags(ref) == ["v1"]
            assert seen == ["https /v2/", "http /v2/", "http /v2/team/app/tags/list"]
        else:
            with pytest.raises(TransportError):
                client.tags(ref)
            assert seen == ["https /v2/"]
