"""`cargohold serve` as a user runs it: settings, TLS, workers, read-only, deletes off, SIGTERM."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cargohold.config import ConfigError, load_config
from tests.api.helpers import OCI_MANIFEST, codes, image_manifest, push_blob, put_manifest, sha256
from tests.support.servers import SRC, CargoholdServer, cargohold, free_port


def test_settings_precedence(tmp_path: Path) -> None:
    file = tmp_path / "c.yml"
    file.write_text("listen: 0.0.0.0:6000\nworkers: 3\nread_only: true\ntls: {cert: /c, key: /k}\n")
    config = load_config(None, {"config": str(file), "workers": 2}, {"CARGOHOLD_LISTEN": "127.0.0.1:7000"})
    assert (config.server.listen, config.server.workers, config.server.read_only) == ("127.0.0.1:7000", 2, True)
    assert (config.server.tls.cert, config.server.tls.key) == ("/c", "/k")
    assert load_config(None, {}, {"CARGOHOLD_DELETE_ENABLED": "false"}).server.delete_enabled is False


@pytest.mark.parametrize(
    ("overrides", "environ"),
    [
        ({"listen": "nocolon"}, {}),
        ({"listen": "h:99999"}, {}),
        ({"workers": 0}, {}),
        ({"tls_cert": "/only/cert"}, {}),
        ({}, {"CARGOHOLD_READ_ONLY": "perhaps"}),
        ({}, {"CARGOHOLD_WORKERS": "two"}),
    ],
)
def test_bad_settings_are_refused(overrides: dict[str, object], environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        load_config(None, overrides, environ)


def test_unknown_key_in_config_file(tmp_path: Path) -> None:
    file = tmp_path / "c.yml"
    file.write_text("lsiten: 1.2.3.4:5\n")
    result = subprocess.run(
        [sys.executable, "-m", "cargohold.cli.main", "serve", "--config", str(file)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=30,
    )
    assert result.returncode == 2
    assert "unknown setting 'lsiten'" in result.stderr


def test_prints_where_it_listens_and_keeps_data(tmp_path: Path) -> None:
    with cargohold(tmp_path) as server:
        pass
    log = server.log()
    assert f"listening on http://127.0.0.1:{server.port}" in log
    assert f"data in {tmp_path / 'data'}" in log


def test_one_json_log_line_per_request(tmp_path: Path) -> None:
    with cargohold(tmp_path) as server:
        response = httpx.get(f"{server.url}/v2/nope/tags/list")
        time.sleep(0.2)
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    entry = next(e for e in lines if e["path"] == "/v2/nope/tags/list")
    assert entry["method"] == "GET" and entry["status"] == 404 and entry["bytes"] > 0
    assert entry["client"].startswith("127.0.0.1:") and entry["duration_ms"] >= 0
    assert entry["request_id"] == response.headers["x-request-id"]
    assert not [e for e in lines if e.get("level") == "debug"], "info (the default) shows no debug lines"
    assert "[INFO] Started worker" in server.log()


def test_log_level(tmp_path: Path) -> None:
    """warning: no access log (info, above, has it); debug: also why each refused request was refused."""
    path = "/v2/no/such/tags/list"
    logs, texts = {}, {}
    for level in ("warning", "debug"):
        (tmp_path / level).mkdir()
        with cargohold(tmp_path / level, "--workers", "1", "--log-level", level) as server:
            assert httpx.get(server.url + path).status_code == 404
            time.sleep(0.3)
        texts[level] = server.log()
        logs[level] = [json.loads(line) for line in texts[level].splitlines() if line.startswith("{")]
    assert logs["warning"] == [] and "[INFO]" not in texts["warning"]
    access = [e for e in logs["debug"] if "status" in e and e["path"] == path]
    refused = [e for e in logs["debug"] if e.get("message") == "request refused"]
    assert [e["status"] for e in access] == [404] and len(refused) == 1, texts["debug"]
    assert (refused[0]["level"], refused[0]["method"], refused[0]["path"]) == ("debug", "GET", path)
    assert refused[0]["request_id"] == access[0]["request_id"]
    assert [(e["code"], e["detail"]) for e in refused[0]["errors"]] == [("NAME_UNKNOWN", {"name": "no/such"})]


def test_settings_from_the_environment_and_a_config_file_named_there(tmp_path: Path) -> None:
    """CARGOHOLD_CONFIG names the YAML file; CARGOHOLD_MAX_MANIFEST_SIZE limits manifest PUTs (413)."""
    config = tmp_path / "cargohold.yml"
    config.write_text("delete_enabled: false\n")
    env = {"CARGOHOLD_CONFIG": str(config), "CARGOHOLD_MAX_MANIFEST_SIZE": "2000"}
    with cargohold(tmp_path, "--workers", "1", env=env) as server, httpx.Client(base_url=server.url) as client:
        raw = image_manifest(client, "env/repo", layers=1)
        fits = raw + b" " * (2000 - len(raw))
        assert put_manifest(client, "env/repo", "fits", fits, OCI_MANIFEST).status_code == 201
        r = put_manifest(client, "env/repo", "big", fits + b" ", OCI_MANIFEST)
        assert r.status_code == 413 and codes(r) == ["SIZE_INVALID"]
        assert client.get("/v2/env/repo/manifests/big").status_code == 404
        r = client.delete(f"/v2/env/repo/manifests/{sha256(fits)}")
        assert r.status_code == 405 and codes(r) == ["UNSUPPORTED"]


def test_default_worker_count_is_one_per_cpu(tmp_path: Path) -> None:
    cpus = len(os.sched_getaffinity(0))
    expected = max(1, min(cpus, 8))
    with cargohold(tmp_path) as server:  # no --workers
        assert server.process is not None
        deadline = time.monotonic() + 20
        while server.log().count("Started worker") < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = child_processes(server.process.pid)
    assert len(workers) == expected, (cpus, workers, server.log())


def child_processes(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                found.append(int(entry))
    return found


def test_deletes_disabled(tmp_path: Path) -> None:
    with cargohold(tmp_path, "--disable-delete") as server, httpx.Client(base_url=server.url) as client:
        digest = push_blob(client, "no/delete", b"kept")
        raw = image_manifest(client, "no/delete")
        put_manifest(client, "no/delete", "v1", raw, OCI_MANIFEST)
        urls = (f"/v2/no/delete/blobs/{digest}", "/v2/no/delete/manifests/v1", f"/v2/no/delete/manifests/{sha256(raw)}")
        for url in urls:
            r = client.delete(url)
            assert r.status_code == 405 and codes(r) == ["UNSUPPORTED"], url
        assert client.get("/v2/no/delete/manifests/v1").status_code == 200


def test_read_only(tmp_path: Path) -> None:
    """Every write is refused, also those on an upload session started before the restart, and mounts."""
    with cargohold(tmp_path) as server, httpx.Client(base_url=server.url) as client:
        raw = image_manifest(client, "ro/repo")
        put_manifest(client, "ro/repo", "v1", raw, OCI_MANIFEST)
        mountable = push_blob(client, "ro/repo", b"a blob to mount")
        location = client.post("/v2/ro/repo/blobs/uploads/").headers["location"]
        assert client.patch(location, content=b"first").status_code == 202
    with cargohold(tmp_path, "--read-only") as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/v2/ro/repo/manifests/v1").status_code == 200
        refused = [
            client.post("/v2/ro/repo/blobs/uploads/"),
            client.post("/v2/ro/repo/blobs/uploads/", params={"digest": sha256(b"whole")}, content=b"whole"),
            put_manifest(client, "ro/repo", "v2", raw, OCI_MANIFEST),
            client.post("/v2/ro/other/blobs/uploads/", params={"mount": mountable, "from": "ro/repo"}),
            client.post("/v2/ro/other/blobs/uploads/", params={"mount": mountable}),
            client.patch(location, content=b"second"),
            client.put(location, params={"digest": sha256(b"first")}),
            client.put(location, params={"digest": sha256(b"firstsecond")}, content=b"second"),
            client.delete(location),
        ]
        for r in refused:
            assert r.status_code == 405 and codes(r) == ["UNSUPPORTED"], (r.request.method, r.request.url)
        assert client.head(f"/v2/ro/other/blobs/{mountable}").status_code == 404
        assert client.get(location).headers["range"] == "0-4"  # the session as it was
        assert client.head(f"/v2/ro/repo/blobs/{sha256(b'first')}").status_code == 404
        assert client.get("/v2/_catalog").json()["repositories"] == ["ro/repo"]
    server.assert_storage_consistent()


@pytest.fixture()
def tls_files(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    yield cert_path, key_path


def test_https(tmp_path: Path, tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    server = CargoholdServer(tmp_path / "data", free_port(), ["--tls-cert", str(cert), "--tls-key", str(key)],
                             scheme="https")
    trust = ssl.create_default_context(cafile=str(cert))
    server.start(verify=trust)
    try:
        with httpx.Client(base_url=server.url, verify=trust) as client:
            digest = push_blob(client, "tls/repo", b"over tls")
            assert client.get(f"/v2/tls/repo/blobs/{digest}").content == b"over tls"
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/v2/")  # not trusted without the CA
    finally:
        server.stop()


def test_two_workers_share_uploads(tmp_path: Path) -> None:
    """Chunks of one upload land on whichever worker; hash state travels through the database."""
    with cargohold(tmp_path, "--workers", "2") as server:
        data = os.urandom(2_000_000)
        location = ""
        for i in range(20):
            with httpx.Client(base_url=server.url) as client:  # a new connection may reach either worker
                if not location:
                    location = client.post("/v2/two/workers/blobs/uploads/").headers["location"]
                chunk = data[i * 100_000 : (i + 1) * 100_000]
                r = client.patch(location, content=chunk,
                                 headers={"Content-Range": f"{i * 100_000}-{(i + 1) * 100_000 - 1}"})
                assert r.status_code == 202, r.text
        with httpx.Client(base_url=server.url) as client:
            assert client.put(location, params={"digest": sha256(data)}).status_code == 201
            assert client.get(f"/v2/two/workers/blobs/{sha256(data)}").content == data
        assert len({line for line in server.log().splitlines() if "Started worker" in line}) == 2


def test_sigterm_lets_a_request_in_flight_finish(tmp_path: Path) -> None:
    with cargohold(tmp_path) as server:
        data = os.urandom(4_000_000)
        location = httpx.post(f"{server.url}/v2/drain/me/blobs/uploads/").headers["location"]
        result: dict[str, int] = {}

        def slow_body() -> Iterator[bytes]:
            for i in range(0, len(data), 400_000):
                yield data[i : i + 400_000]
                time.sleep(0.1)

        def upload() -> None:
            r = httpx.patch(f"{server.url}{location}", content=slow_body(), timeout=30)
            result["status"] = r.status_code

        thread = threading.Thread(target=upload)
        thread.start()
        time.sleep(0.35)
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        thread.join(30)
        assert result.get("status") == 202
        server.process.wait(30)
        server.start()
        r = httpx.get(f"{server.url}{location}")
        assert r.headers["range"] == f"0-{len(data) - 1}"
        server.assert_storage_consistent()
