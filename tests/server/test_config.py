"""The sectioned configuration: its YAML form beside the flat one, precedence of a nested key, messages that
name the key and the value, and blob stores chosen by driver name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cargohold.config import ConfigError, ServerConfig, load_config
from cargohold.storage import StorageError, open_blob_store
from tests.api.helpers import push_blob
from tests.support.servers import SRC, cargohold

SECTIONED = """
server:
  listen: 0.0.0.0:6000
  data_dir: /srv/registry
  tls: {cert: /c, key: /k}
  workers: 3
  read_only: true
storage:
  driver: filesystem
  filesystem: {root: /srv/blobs}
database: {url: "sqlite:///srv/m.db"}
auth:
  mode: token
  token_lifetime: 600
  service: registry.example
  login_failures_per_address: 7
"""

FLAT = """
listen: 0.0.0.0:6000
data_dir: /srv/registry
tls: {cert: /c, key: /k}
workers: 3
read_only: true
storage_driver: filesystem
database_url: "sqlite:///srv/m.db"
auth: token
auth_token_lifetime: 600
auth_service: registry.example
login_failures_per_address: 7
"""


def _file(tmp_path: Path, text: str, name: str = "c.yml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_the_sectioned_form_and_the_flat_form_say_the_same(tmp_path: Path) -> None:
    config = load_config(_file(tmp_path, SECTIONED), {}, {})
    assert (config.server.listen, config.server.workers, config.server.read_only) == ("0.0.0.0:6000", 3, True)
    assert (config.server.tls.cert, config.server.tls.key, config.data_dir) == ("/c", "/k", "/srv/registry")
    assert config.storage.driver_options(config.data_dir) == {"root": "/srv/blobs", "orphan_grace_seconds": 86400.0}
    assert (config.metadata_url, config.auth.mode, config.auth.token_lifetime) == ("sqlite:///srv/m.db", "token", 600)
    assert (config.auth.service, config.auth.login_failures_per_address) == ("registry.example", 7)
    flat = load_config(_file(tmp_path, FLAT, "flat.yml"), {}, {})
    assert flat == load_config(None, {}, {"CARGOHOLD_CONFIG": _file(tmp_path, SECTIONED.replace(
        "  filesystem: {root: /srv/blobs}\n", ""))})
    # blobs in the data directory
    assert flat.storage.driver_options(flat.data_dir) == {"root": "/srv/registry", "orphan_grace_seconds": 86400.0}
    # both forms in one file, and an empty section; then to the worker processes and back
    mixed = load_config(_file(tmp_path, "auth: {mode: htpasswd, htpasswd: /h}\nlisten: 127.0.0.1:1\nstorage:\n"),
                        {}, {})
    assert (mixed.auth.mode, mixed.auth.htpasswd, mixed.server.listen) == ("htpasswd", "/h", "127.0.0.1:1")
    assert ServerConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    ("file", "environ", "flags", "expected"),
    [
        ("server: {listen: '127.0.0.1:1'}\n", {}, {}, "127.0.0.1:1"),
        ("server: {listen: '127.0.0.1:1'}\n", {"CARGOHOLD_LISTEN": "127.0.0.1:2"}, {}, "127.0.0.1:2"),
        ("server: {listen: '127.0.0.1:1'}\n", {"CARGOHOLD_LISTEN": "127.0.0.1:2"}, {"listen": "127.0.0.1:3"},
         "127.0.0.1:3"),
        ("", {"CARGOHOLD_LISTEN": "127.0.0.1:2"}, {"server.listen": "127.0.0.1:3"}, "127.0.0.1:3"),
        ("", {}, {}, "127.0.0.1:5000"),
    ],
)
def test_flag_over_environment_over_file_over_default_for_a_nested_key(
        tmp_path: Path, file: str, environ: dict[str, str], flags: dict[str, object], expected: str) -> None:
    config = load_config(None, {"config": _file(tmp_path, file), **flags}, environ)
    assert config.server.listen == expected


def test_every_source_reaches_a_deeper_key(tmp_path: Path) -> None:
    file = _file(tmp_path, "storage: {filesystem: {root: /from/file}}\nauth: {htpasswd: /f, mode: htpasswd}\n")
    environ = {"CARGOHOLD_STORAGE_FILESYSTEM_ROOT": "/from/env", "CARGOHOLD_AUTH_HTPASSWD": "/e"}
    assert load_config(file, {}, {}).storage.filesystem.root == "/from/file"
    assert load_config(file, {}, environ).storage.filesystem.root == "/from/env"
    config = load_config(file, {"storage.filesystem.root": "/from/flag", "auth_htpasswd": "/g"}, environ)
    assert (config.storage.filesystem.root, config.auth.htpasswd) == ("/from/flag", "/g")


@pytest.mark.parametrize(
    ("file", "environ", "flags", "message"),
    [
        ("auth: {token_lifetime: abc}\n", {}, {},
         "auth.token_lifetime: cannot use 'abc' (must be an integer; from config file {file})"),
        ("auth_token_lifetime: abc\n", {}, {},
         "auth.token_lifetime: cannot use 'abc' (must be an integer; from config file {file})"),
        ("", {"CARGOHOLD_AUTH_TOKEN_LIFETIME": "abc"}, {},
         "auth.token_lifetime: cannot use 'abc' (must be an integer; from CARGOHOLD_AUTH_TOKEN_LIFETIME)"),
        ("", {}, {"workers": "two"}, "server.workers: cannot use 'two' (must be an integer; from command line)"),
        ("", {"CARGOHOLD_READ_ONLY": "perhaps"}, {},
         "server.read_only: cannot use 'perhaps' (must be true or false; from CARGOHOLD_READ_ONLY)"),
        ("server: {shutdown_delay_seconds: soon}\n", {}, {},
         "server.shutdown_delay_seconds: cannot use 'soon' (must be a number; from config file {file})"),
        ("server: [listen]\n", {}, {}, "server: cannot use ['listen'] (must be a mapping; from config file {file})"),
        ("auth: {mode: token, tokn_lifetime: 60}\n", {}, {},
         "config file {file}: unknown setting 'auth.tokn_lifetime'"),
        ("storage: {driver: gcs, gcs: {bucket: b}}\n", {}, {}, "config file {file}: unknown setting 'storage.gcs'"),
        ("storage: {driver: s3, s3: {bucket: b, part_size: 1048576}}\n", {}, {},
         "storage.s3.part_size: 1048576 is below S3's minimum of 5242880"),
        ("storage: {driver: s3, s3: {bucket: b, endpoint: 'localhost:9000'}}\n", {}, {},
         "storage.s3.endpoint: cannot use 'localhost:9000' (must be an http or https URL)"),
        ("storage: {driver: s3}\n", {}, {}, "storage.s3.bucket: empty, but storage.driver is s3 (name the bucket)"),
        ("storage: {s3: {bucket: b, redirect_expiry_seconds: 0}}\n", {}, {},
         "storage.s3.redirect_expiry_seconds: 0 is not between 1 and 604800 (SigV4's longest)"),
        ("storage: {s3: {bucket: b, max_attempts: 0}}\n", {}, {},
         "storage.s3.max_attempts: 0 is not between 1 and 20"),
        ("storage: {s3: {bucket: b, timeout_seconds: 0}}\n", {}, {},
         "storage.s3.timeout_seconds: 0.0 is not above 0 and at most 3600"),
        ("storage: {s3: {bucket: b, orphan_grace_seconds: -1}}\n", {}, {},
         "storage.s3.orphan_grace_seconds: -1.0 is negative"),
        ("storage: {filesystem: {orphan_grace_seconds: -1}}\n", {}, {},
         "storage.filesystem.orphan_grace_seconds: -1.0 is negative"),
        ("scrub: {sample_size: 0}\n", {}, {}, "scrub.sample_size: 0 is not between 1 and 1000000"),
        ("scrub: {interval_seconds: 0}\n", {}, {},
         "scrub.interval_seconds: 0.0 is not between 1 and 2592000 (30 days)"),
        ("lsiten: 1.2.3.4:5\n", {}, {}, "config file {file}: unknown setting 'lsiten'"),
        ("tls: /c\n", {}, {}, "server.tls: cannot use '/c' (must be a mapping; from config file {file})"),
        ("listen: 127.0.0.1:1\nserver: {listen: 127.0.0.1:2}\n", {}, {},
         "config file {file}: server.listen is set twice (flat and in its section)"),
        ("auth: {mode: ldap}\n", {}, {}, "auth must be none, htpasswd or token, not 'ldap'"),
        ("server: {tls: {cert: /c}}\n", {}, {}, "TLS needs both a certificate and a key"),
        ("gc: {grace_period: soon}\n", {}, {}, "gc.grace_period: 'soon' is not a duration (24h, 90m, or seconds)"),
        ("", {"CARGOHOLD_GC_UNTAGGED_GRACE_PERIOD": "-1"}, {}, "gc.untagged_grace_period: '-1' is negative"),
        ("gc: {interval: 0}\n", {}, {}, "gc.interval: 0.0 must be more than 0"),
        ("gc: {referrers: drop}\n", {}, {}, "gc.referrers: 'drop' is not collect or keep"),
    ],
)
def test_a_bad_setting_is_named_with_its_value(
        tmp_path: Path, file: str, environ: dict[str, str], flags: dict[str, object], message: str) -> None:
    path = _file(tmp_path, file)
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"config": path, **flags}, environ)
    assert str(caught.value) == message.format(file=path)


def test_the_gc_section_takes_durations() -> None:
    config = load_config(None, {}, {"CARGOHOLD_GC_GRACE_PERIOD": "2h", "CARGOHOLD_GC_REFERRERS": "keep"})
    assert config.gc.seconds("grace_period") == 7200 and config.gc.seconds("untagged_grace_period") == 86400
    assert config.gc.enabled and config.gc.seconds("interval") == 3600 and config.gc.referrers == "keep"


def test_blobs_go_where_the_storage_section_says(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    config = _file(tmp_path, f"storage:\n  driver: filesystem\n  filesystem: {{root: {root}}}\n")
    with cargohold(tmp_path, "--workers", "1", "--config", config) as server, \
            httpx.Client(base_url=server.url) as client:
        digest = push_blob(client, "some/repo", b"where do I live")
        assert client.get(f"/v2/some/repo/blobs/{digest}").content == b"where do I live"
    assert [p for p in root.rglob("*") if p.is_file() and p.name == digest.split(":")[1]]
    assert not (server.data_dir / "blobs").exists()
    assert (server.data_dir / "metadata.db").exists()


def test_an_unknown_storage_driver_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="unknown blob storage driver 'gcs'"):
        open_blob_store("gcs", {})
    config = _file(tmp_path, "storage: {driver: gcs}\n")
    result = subprocess.run(
        [sys.executable, "-m", "cargohold.cli.main", "serve", "--config", config, "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "cargohold: cannot open storage: unknown blob storage driver 'gcs' (storage.driver: filesystem, memory, s3)"]


def test_the_memory_driver_needs_one_worker(tmp_path: Path) -> None:
    """Each worker process would have a store of its own: a blob pushed to one is unknown to the next."""
    environ = {"CARGOHOLD_STORAGE_DRIVER": "memory"}
    with pytest.raises(ConfigError, match="storage.driver memory keeps blobs inside one process, but server.workers"
                                          " is 2: .*set server.workers to 1"):
        load_config(None, {"workers": 2}, environ)
    assert load_config(None, {"workers": 1}, environ).storage.driver == "memory"


def test_client_commands_do_not_import_the_server_configuration() -> None:
    code = (
        "import sys\n"
        "from cargohold.cli.main import main\n"
        "try:\n    main(['tags', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('cargohold.config', 'msgspec', 'yaml', 'psycopg', 'boto3', 'botocore')\n"
        "             if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(SRC)})
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_schema1_signing_key_is_distributions_setting_and_a_bad_one_is_one_line(tmp_path: Path) -> None:
    config = _file(tmp_path, "compatibility:\n  schema1: {signingkeyfile: /etc/registry/schema1.pem}\n")
    assert load_config(config, {}, {}).schema1_key_path == "/etc/registry/schema1.pem"
    default = load_config(None, {"data_dir": "/srv/r"}, {})
    assert default.schema1_key_path == "/srv/r/auth/schema1-key.pem"  # beside the token key
    (tmp_path / "not-a-key.pem").write_text("hello\n")
    environ = {**os.environ, "PYTHONPATH": str(SRC),
               "CARGOHOLD_COMPATIBILITY_SCHEMA1_SIGNINGKEYFILE": str(tmp_path / "not-a-key.pem")}
    result = subprocess.run(
        [sys.executable, "-m", "cargohold.cli.main", "serve", "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True, env=environ, timeout=30,
    )
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"cargohold: cannot load the schema 1 signing key {tmp_path / 'not-a-key.pem'}: ")
