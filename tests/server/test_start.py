"""What stops `cargohold serve` before it serves: one line on stderr, a non-zero exit, nothing written."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.servers import SRC, cargohold, free_port


def _serve(data: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cargohold.cli.main", "serve", "--data-dir", str(data), *map(str, args)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=30,
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("missing", ["certificate", "key"])
def test_a_missing_tls_file_is_named(tmp_path: Path, missing: str) -> None:
    present, absent = tmp_path / "present.pem", tmp_path / "absent.pem"
    present.write_text("not read this far\n")
    cert, key = (absent, present) if missing == "certificate" else (present, absent)
    line = _one_line(_serve(tmp_path / "data", "--listen", f"127.0.0.1:{free_port()}",
                            "--tls-cert", cert, "--tls-key", key))
    assert f"TLS {missing} {absent}" in line and "No such file" in line
    assert not (tmp_path / "data").exists()


def test_an_unusable_tls_pair_is_named(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    key.write_text("neither a key\n")
    line = _one_line(_serve(tmp_path / "data", "--listen", f"127.0.0.1:{free_port()}",
                            "--tls-cert", cert, "--tls-key", key))
    assert str(cert) in line and str(key) in line


def test_a_second_server_on_a_port_in_use_does_not_start(tmp_path: Path) -> None:
    (tmp_path / "first").mkdir()
    with cargohold(tmp_path / "first") as first:
        pushed = httpx.post(f"{first.url}/v2/only/here/blobs/uploads/")
        assert pushed.status_code == 202
        line = _one_line(_serve(tmp_path / "second", "--listen", first.host))
        assert f"port {first.port}" in line
        assert not (tmp_path / "second").exists()
        for _ in range(6):  # every connection still reaches the first server's data
            assert httpx.get(f"{first.url}/v2/only/here/blobs/uploads/{pushed.headers['docker-upload-uuid']}"
                             ).status_code == 204


@pytest.mark.parametrize("reuse_port", [False, True])
def test_a_port_another_program_listens_on(tmp_path: Path, reuse_port: bool) -> None:
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, int(reuse_port))
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        line = _one_line(_serve(tmp_path / "data", "--listen", f"127.0.0.1:{port}"))
    assert line == f"cargohold: port {port} is already in use (127.0.0.1:{port})"
