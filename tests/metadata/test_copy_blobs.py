"""``cargohold migrate --from-sqlite DIR --copy-blobs``: an embedded registry (SQLite + filesystem) moves to
PostgreSQL + S3, its blobs copied into the bucket, checked, and the copy safe to run again or to finish
after it was killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.interop.conftest import images, make_clients  # noqa: F401 - the interop fixtures, for skopeo here
from tests.interop.tools import BuiltImages, MakeClients, OciLayout, assert_same_image, requires_skopeo
from tests.metadata.test_copy_from_sqlite import _digest, push
from tests.scale.conftest import PART_SIZE, MiB, s3_env
from tests.support.postgres import PostgresCluster, query
from tests.support.seaweedfs import SeaweedFS
from tests.support.servers import SRC, cargohold


def migrate(data: Path, url: str, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cargohold.cli.main", "migrate", "--data-dir", str(data), "--database-url", url,
         "--from-sqlite", str(data), "--copy-blobs", "--json", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(SRC), **env})


def run_migrate(data: Path, url: str, env: dict[str, str]) -> tuple[int, dict[str, int | list[str]], str]:
    """Its exit status, the blob copy's summary, its stderr."""
    process = migrate(data, url, env)
    out, err = process.communicate(timeout=300)
    return process.returncode, json.loads(out)["blobs"] if out.strip() else {}, err


def blob_rows(url: str) -> dict[str, str]:
    return dict(query(url, "SELECT digest, key FROM store_blobs"))


@requires_skopeo
def test_an_embedded_registry_moves_to_postgresql_and_s3(
    postgres: PostgresCluster, seaweedfs: SeaweedFS, images: BuiltImages, make_clients: MakeClients,  # noqa: F811
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    big = os.urandom(2 * PART_SIZE + 12345)  # three parts of a multipart upload
    with cargohold(tmp_path) as embedded:
        clients = make_clients("clients", [embedded.host])
        clients.skopeo.copy(f"oci:{images.oci.path}:small", f"docker://{embedded.host}/team/small:1")
        clients.skopeo.copy(f"oci:{images.oci.path}:multi", f"docker://{embedded.host}/team/multi:1", "--all")
        push(embedded.url, "team/big", "1", big)
    named = {row[0] for row in query(f"sqlite://{data / 'metadata.db'}", "SELECT digest FROM blobs")}
    url, env = postgres.fresh_database(), s3_env(seaweedfs)
    prefix = env["CARGOHOLD_STORAGE_S3_PREFIX"]

    process = migrate(data, url, env)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    blobs = json.loads(out)["blobs"]
    assert blobs == {"total": len(named), "copied": len(named), "bytes": blobs["bytes"], "present": 0,
                     "missing": [], "corrupt": [], "unchecked": []}
    assert blobs["bytes"] > len(big)
    assert f"{_digest(big)}: copied {len(big)} bytes" in err  # progress on stderr
    assert set(blob_rows(url)) == named
    keys = sorted(seaweedfs.keys(prefix))
    assert len(keys) == len(named)

    again = migrate(data, url, env)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert json.loads(out)["blobs"] == {**blobs, "copied": 0, "bytes": 0, "present": len(named)}
    assert sorted(seaweedfs.keys(prefix)) == keys  # nothing copied twice

    (tmp_path / "moved").mkdir()
    with cargohold(tmp_path / "moved", env=env, database_url=url) as moved:
        clients = make_clients("pull", [moved.host])
        out_dir = tmp_path / "out"
        clients.skopeo.copy(f"docker://{moved.host}/team/small:1", f"oci:{out_dir}:small")
        clients.skopeo.copy(f"docker://{moved.host}/team/multi:1", f"oci:{out_dir}:multi", "--all")
        assert_same_image(images.oci, "small", OciLayout(out_dir), "small")
        assert_same_image(images.oci, "multi", OciLayout(out_dir), "multi")
        with httpx.Client(base_url=moved.url, follow_redirects=True) as client:
            assert client.get(f"/v2/team/big/blobs/{_digest(big)}").content == big
    assert not (tmp_path / "moved" / "data" / "blobs").exists()  # served from the bucket


def test_a_copy_killed_midway_completes_when_run_again(
    postgres: PostgresCluster, seaweedfs: SeaweedFS, tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    layers = [os.urandom(MiB + n) for n in range(30)]
    with cargohold(tmp_path) as embedded:
        for n, layer in enumerate(layers):
            push(embedded.url, "team/app", f"v{n}", layer)
    url, env = postgres.fresh_database(), s3_env(seaweedfs)
    total = len(layers) + 1  # and the config blob they share

    process = migrate(data, url, env)
    assert process.stderr is not None
    copied = 0
    for line in process.stderr:
        copied += ": copied " in line
        if copied == 5:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    before = len(blob_rows(url))
    assert 5 <= before < total

    status, blobs, err = run_migrate(data, url, env)
    assert status == 0, err
    assert blobs["copied"] == total - before and blobs["present"] == before, blobs
    assert len(blob_rows(url)) == total
    (tmp_path / "moved").mkdir()
    with cargohold(tmp_path / "moved", env=env, database_url=url) as moved, \
            httpx.Client(base_url=moved.url, follow_redirects=True) as client:
        for layer in layers:
            assert client.get(f"/v2/team/app/blobs/{_digest(layer)}").content == layer


def test_a_blob_file_that_does_not_match_its_digest_is_reported_and_not_copied(
    postgres: PostgresCluster, seaweedfs: SeaweedFS, tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    small, large = b"a small layer", os.urandom(PART_SIZE + 1)
    with cargohold(tmp_path) as embedded:
        push(embedded.url, "team/app", "v1", small)
        push(embedded.url, "team/app", "v2", large)
    for layer in (small, large):  # the same length, other bytes
        hexdigest = _digest(layer).split(":")[1]
        (data / "blobs" / "sha256" / hexdigest[:2] / hexdigest).write_bytes(layer[:-1] + b"!")
    url, env = postgres.fresh_database(), s3_env(seaweedfs)

    process = migrate(data, url, env)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1, err
    blobs = json.loads(out)["blobs"]
    assert sorted(blobs["corrupt"]) == sorted([_digest(small), _digest(large)]) and blobs["copied"] == 1, blobs
    assert f"blob {_digest(large)}: its file does not match its digest, not copied" in err
    assert set(blob_rows(url)) == {_digest(b'{"architecture":"amd64","os":"linux"}')}
    assert len(seaweedfs.keys(env["CARGOHOLD_STORAGE_S3_PREFIX"])) == 1  # the large one's parts aborted


def test_blobs_are_copied_into_an_s3_store_only(postgres: PostgresCluster, tmp_path: Path) -> None:
    with cargohold(tmp_path) as embedded:
        push(embedded.url, "team/app", "v1", b"layer")
    process = migrate(tmp_path / "data", postgres.fresh_database(), {})
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2 and "--copy-blobs copies into the S3 store" in err
