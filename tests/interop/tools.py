"""Run real registry clients (skopeo, buildah, podman) and peer servers (Distribution) for interop tests.

Every tool gets its own storage, registries.conf, auth file and temp dir under the test's tmp_path, so
tests share no state. Nothing here talks to the network beyond 127.0.0.1, except ``debootstrap`` (once,
then cached under ``~/.cache/cargohold-tests``).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import filecmp
import gzip
import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.requirements import require, require_tool, requires_tool, unmet
from tests.support.servers import CargoholdServer, free_port, stop_process, wait_for_http

CACHE = Path(os.environ.get("CARGOHOLD_TEST_CACHE", Path.home() / ".cache" / "cargohold-tests"))
#: a tool call that takes longer than this is a hang, not a slow machine
TIMEOUT = 600.0


requires_skopeo = requires_tool("skopeo")
requires_buildah = requires_tool("buildah")
requires_podman = requires_tool("podman")
requires_distribution = requires_tool("docker-registry")


class ToolError(AssertionError):
    """A client exited non-zero; carries its output so the failure explains itself."""

    def __init__(self, argv: Sequence[str], result: subprocess.CompletedProcess[str]):
        self.argv = list(argv)
        self.returncode = result.returncode
        self.stdout = result.stdout
        self.stderr = result.stderr
        super().__init__(
            f"{' '.join(argv)} exited with {result.returncode}\n"
            f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
        )


@dataclass
class Tool:
    """A command line tool with fixed global flags and environment."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str, check: bool = True, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
        argv = [*self.argv, *args]
        result = subprocess.run(
            argv, capture_output=True, text=True, env={**os.environ, **self.env}, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise ToolError(argv, result)
        return result

    def out(self, *args: str) -> str:
        return self.run(*args).stdout

    def out_bytes(self, *args: str) -> bytes:
        """stdout exactly as written (no newline translation), for digests."""
        argv = [*self.argv, *args]
        result = subprocess.run(argv, capture_output=True, env={**os.environ, **self.env}, timeout=TIMEOUT,
                                check=False)
        if result.returncode != 0:
            text = subprocess.CompletedProcess(argv, result.returncode, result.stdout.decode(errors="replace"),
                                               result.stderr.decode(errors="replace"))
            raise ToolError(argv, text)
        return result.stdout

    def fails(self, *args: str) -> ToolError:
        """Run a command that must fail; return the failure for inspection."""
        argv = [*self.argv, *args]
        result = self.run(*args, check=False)
        assert result.returncode != 0, f"{' '.join(argv)} succeeded but should have failed:\n{result.stdout}"
        return ToolError(argv, result)


class Skopeo(Tool):
    def copy(self, source: str, dest: str, *flags: str) -> None:
        self.run("copy", "--src-tls-verify=false", "--dest-tls-verify=false", *flags, source, dest)

    def inspect(self, ref: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.out("inspect", "--tls-verify=false", ref))
        return found

    def inspect_raw(self, ref: str) -> bytes:
        return self.out_bytes("inspect", "--raw", "--tls-verify=false", ref)

    def list_tags(self, ref: str) -> list[str]:
        tags: list[str] = json.loads(self.out("list-tags", "--tls-verify=false", ref))["Tags"]
        return tags

    def delete(self, ref: str) -> None:
        self.run("delete", "--tls-verify=false", ref)


@dataclass
class Clients:
    """skopeo, buildah and podman sharing one private configuration under ``root``."""

    root: Path
    insecure: list[str]

    def __post_init__(self) -> None:
        for sub in ("tmp", "storage"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # podman refuses a runroot path longer than 50 characters, so it cannot live under tmp_path
        self.runroot = Path(tempfile.mkdtemp(prefix="cargohold-run-"))
        self.registries_conf = self.root / "registries.conf"
        self.registries_conf.write_text(
            'unqualified-search-registries = []\n\n'
            + "".join(f'[[registry]]\nlocation = "{host}"\ninsecure = true\n\n' for host in self.insecure)
        )
        (self.root / "auth.json").write_text('{"auths": {}}\n')
        self.env = {
            "CONTAINERS_REGISTRIES_CONF": str(self.registries_conf),
            "REGISTRY_AUTH_FILE": str(self.root / "auth.json"),
            "TMPDIR": str(self.root / "tmp"),
            "BUILDAH_ISOLATION": "chroot",
        }
        storage = ["--storage-driver", "vfs", "--root", str(self.root / "storage"),
                   "--runroot", str(self.runroot)]
        self.skopeo = Skopeo(["skopeo", "--registries-conf", str(self.registries_conf)], self.env)
        self.buildah = Tool(["buildah", *storage], self.env)
        self.podman = Tool(["podman", *storage, "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                            "--tmpdir", str(self.root / "tmp")], self.env)

    def close(self) -> None:
        shutil.rmtree(self.runroot, ignore_errors=True)


#: the ``make_clients`` fixture: (name, insecure registries) -> Clients under the test's tmp_path
MakeClients = Callable[[str, list[str]], Clients]


# OCI image layouts and dir: layouts


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


@dataclass(frozen=True)
class OciLayout:
    """An OCI image layout directory (``oci:DIR``)."""

    path: Path

    @property
    def index(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads((self.path / "index.json").read_text())
        return found

    def descriptor(self, tag: str) -> dict[str, Any]:
        for descriptor in self.index["manifests"]:
            if descriptor.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
                found: dict[str, Any] = descriptor
                return found
        raise KeyError(f"{self.path} has no tag {tag!r}")

    def blob_path(self, digest: str) -> Path:
        algorithm, hexdigest = digest.split(":")
        return self.path / "blobs" / algorithm / hexdigest

    def blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    def blob_digests(self) -> set[str]:
        return {f"{p.parent.name}:{p.name}" for p in (self.path / "blobs").glob("*/*")}

    def manifest(self, tag: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.blob(self.descriptor(tag)["digest"]))
        return found

    def reachable(self, digest: str) -> set[str]:
        """Every blob digest a manifest or index refers to, itself included."""
        found = {digest}
        document = json.loads(self.blob(digest))
        for child in document.get("manifests", []):
            found |= self.reachable(child["digest"])
        for descriptor in [document.get("config"), *document.get("layers", [])]:
            if descriptor:
                found.add(descriptor["digest"])
        return found


def assert_blobs_intact(layout: OciLayout) -> None:
    for digest in layout.blob_digests():
        assert sha256_file(layout.blob_path(digest)) == digest, f"{layout.path}: blob {digest} is corrupt"


def assert_same_image(a: OciLayout, tag_a: str, b: OciLayout, tag_b: str) -> None:
    """The two layouts hold the same manifest (by digest) and byte-identical blobs under it."""
    descriptor_a, descriptor_b = a.descriptor(tag_a), b.descriptor(tag_b)
    for key in ("mediaType", "digest", "size"):
        assert descriptor_a[key] == descriptor_b[key], f"index descriptors differ in {key}"
    digests = a.reachable(descriptor_a["digest"])
    assert digests == b.reachable(descriptor_b["digest"])
    for digest in digests:
        assert sha256_file(a.blob_path(digest)) == digest
        assert filecmp.cmp(a.blob_path(digest), b.blob_path(digest), shallow=False), f"blob {digest} differs"


def assert_same_dir(a: Path, b: Path) -> None:
    """Two ``dir:`` layouts hold the same manifest bytes and the same blobs."""
    assert (a / "manifest.json").read_bytes() == (b / "manifest.json").read_bytes()
    names_a = {p.name for p in a.iterdir()} - {"version"}
    names_b = {p.name for p in b.iterdir()} - {"version"}
    assert names_a == names_b
    for name in names_a - {"manifest.json"}:
        assert sha256_file(a / name) == f"sha256:{name}"
        assert filecmp.cmp(a / name, b / name, shallow=False), f"blob {name} differs"


# images


@dataclass(frozen=True)
class BuiltImages:
    """Images built once per session; tests copy them into their own storage."""

    oci: OciLayout  # tags: "small" (2 layers, OCI media types), "base" (1 layer), "multi" (index, 2 platforms)
    docker_dir: Path  # dir: layout of "small" committed in docker format (schema 2 manifest)


def build_test_images(workdir: Path) -> BuiltImages:
    """A two-layer ``FROM scratch`` busybox image with a ``RUN`` step and labels, in OCI and docker formats."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    context = workdir / "context"
    context.mkdir(parents=True)
    shutil.copy(busybox, context / "busybox")
    (context / "hello.txt").write_text("hello from cargohold interop tests\n")
    clients = Clients(workdir / "build", [])
    try:
        return _build(clients, workdir)
    finally:
        clients.close()


def _build(clients: Clients, workdir: Path) -> BuiltImages:
    context = workdir / "context"
    buildah = clients.buildah

    container = buildah.out("from", "scratch").strip()
    buildah.run("copy", container, str(context / "busybox"), "/bin/busybox")
    buildah.run("run", container, "--", "/bin/busybox", "--install", "-s", "/bin")
    buildah.run("config", "--label", "org.example.stage=base", "--cmd", '["/bin/sh"]', container)
    buildah.run("commit", "-q", "--rm", "--format", "oci", container, "localhost/interop/base:1")

    container = buildah.out("from", "localhost/interop/base:1").strip()
    buildah.run("copy", container, str(context / "hello.txt"), "/hello.txt")
    buildah.run("run", container, "--", "/bin/sh", "-c", "echo built-by-run > /built.txt && mkdir -p /etc/interop")
    buildah.run("config", "--label", "org.opencontainers.image.title=cargohold-interop",
                "--label", "org.example.stage=final", "--env", "INTEROP=1", container)
    buildah.run("commit", "-q", "--format", "oci", container, "localhost/interop/small:oci")
    buildah.run("commit", "-q", "--rm", "--format", "docker", container, "localhost/interop/small:docker")

    buildah.run("manifest", "create", "localhost/interop/multi:1")
    buildah.run("manifest", "add", "--arch", "amd64", "localhost/interop/multi:1", "localhost/interop/small:oci")
    buildah.run("manifest", "add", "--arch", "arm64", "--variant", "v8", "localhost/interop/multi:1",
                "localhost/interop/base:1")

    layout = workdir / "layout"
    buildah.run("push", "-q", "localhost/interop/small:oci", f"oci:{layout}:small")
    buildah.run("push", "-q", "localhost/interop/base:1", f"oci:{layout}:base")
    buildah.run("manifest", "push", "-q", "--all", "localhost/interop/multi:1", f"oci:{layout}:multi")
    docker_dir = workdir / "docker-dir"
    buildah.run("push", "-q", "localhost/interop/small:docker", f"dir:{docker_dir}")
    return BuiltImages(OciLayout(layout), docker_dir)


def _lock(path: Path) -> contextlib.AbstractContextManager[None]:
    @contextlib.contextmanager
    def locked() -> Iterator[None]:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    return locked()


def debian_rootfs_tarball(suite: str = "bookworm") -> Path:
    """A gzipped minbase Debian root filesystem, made once with debootstrap and cached.

    Returns the cached ``.tar.gz``; a test that needs it skips (fails under CI) when debootstrap is
    missing, not run as root, or fails (no mirror). The apt caches and ``/dev`` nodes are left out,
    as in Debian's official images.
    """
    tarball = CACHE / f"debian-{suite}-minbase.tar.gz"
    if tarball.exists():
        return tarball
    require_tool("debootstrap")
    require(os.geteuid() == 0, "debootstrap needs root")
    mirror = os.environ.get("CARGOHOLD_DEBIAN_MIRROR", "http://deb.debian.org/debian")
    with _lock(CACHE / f"debian-{suite}.lock"):
        if tarball.exists():  # another session made it while we waited
            return tarball
        with tempfile.TemporaryDirectory(dir=CACHE, prefix="debootstrap-") as work:
            target = Path(work) / "rootfs"
            result = subprocess.run(
                ["debootstrap", "--variant=minbase", suite, str(target), mirror],
                capture_output=True, text=True, timeout=1800, check=False,
            )
            if result.returncode != 0:
                log = (result.stdout + result.stderr)[-1500:]
                unmet(f"debootstrap {suite} from {mirror} failed (no mirror?):\n{log}")
            for leftover in [*target.glob("var/cache/apt/archives/*.deb"), *target.glob("var/lib/apt/lists/*_*")]:
                leftover.unlink()
            partial = Path(work) / "rootfs.tar.gz"
            subprocess.run(
                ["tar", "-C", str(target), "--numeric-owner", "--exclude=./dev/*", "-czf", str(partial), "."],
                check=True, timeout=600,
            )
            partial.replace(tarball)
    return tarball


def single_layer_layout(layer_gz: Path, dest: Path, tag: str, config: dict[str, Any]) -> OciLayout:
    """An OCI layout holding one image whose only layer is ``layer_gz`` (a gzipped tar)."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    diff_id_file = layer_gz.with_suffix(".diffid")
    if diff_id_file.exists() and diff_id_file.stat().st_mtime >= layer_gz.stat().st_mtime:
        diff_id = diff_id_file.read_text().strip()
    else:
        h = hashlib.sha256()
        with gzip.open(layer_gz, "rb") as file:
            while chunk := file.read(1 << 20):
                h.update(chunk)
        diff_id = f"sha256:{h.hexdigest()}"
        with contextlib.suppress(OSError):
            diff_id_file.write_text(diff_id + "\n")
    layer_digest = sha256_file(layer_gz)
    layer_path = blobs / layer_digest.split(":")[1]
    try:
        os.link(layer_gz, layer_path)
    except OSError:
        shutil.copyfile(layer_gz, layer_path)

    def put(document: dict[str, Any]) -> tuple[str, int]:
        raw = json.dumps(document, separators=(",", ":")).encode()
        digest = hashlib.sha256(raw).hexdigest()
        (blobs / digest).write_bytes(raw)
        return f"sha256:{digest}", len(raw)

    config = {**config, "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    config_digest, config_size = put(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest, "size": layer_gz.stat().st_size}],
    }
    manifest_digest, manifest_size = put(manifest)
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
        "size": manifest_size, "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    (dest / "index.json").write_text(json.dumps(index))
    return OciLayout(dest)


# Distribution (the reference registry), for parity checks


@dataclass
class DistributionServer:
    host: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def distribution(tmp: Path, schema1_key: Path | None = None) -> Iterator[DistributionServer]:
    """Distribution 2.8 (Debian ``docker-registry``) on a free port, filesystem storage, deletes on.

    ``schema1_key``: the key file it signs the schema 1 manifests it generates with (else its own).
    """
    port = free_port()
    data = tmp / "distribution-data"
    data.mkdir(parents=True)
    config = tmp / "distribution.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: info}\n"
        "storage:\n"
        f"  filesystem: {{rootdirectory: {data}}}\n"
        "  delete: {enabled: true}\n"
        "  cache: {blobdescriptor: inmemory}\n"
        "http:\n"
        f"  addr: 127.0.0.1:{port}\n"
        "  secret: cargohold-interop-secret\n"
        "compatibility:\n"
        "  schema1: {enabled: true" + (f", signingkeyfile: {schema1_key}" if schema1_key else "") + "}\n"
    )
    log_path = tmp / "distribution.log"
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # aws-sdk-go panics on it
    with open(log_path, "ab") as log:
        process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log, env=env)
    server = DistributionServer(f"127.0.0.1:{port}", data, process, log_path)
    try:
        wait_for_http(f"{server.url}/v2/", process)
        yield server
    finally:
        stop_process(process)


def request_log(server: CargoholdServer, timeout: float = 10.0) -> list[dict[str, Any]]:
    """cargohold's JSON access log (method, path, status, ...) of every request answered so far.

    The log is written asynchronously, so a marker request is sent and awaited: once it is in the
    log, so is everything before it. Marker lines are left out of the result.
    """
    marker = f"/v2/log-marker/{uuid.uuid4().hex}/tags/list"
    httpx.get(server.url + marker)
    deadline = time.monotonic() + timeout
    while True:
        entries = []
        for line in server.log().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    entries.append(json.loads(line))
        if any(entry.get("path") == marker for entry in entries):
            return [entry for entry in entries if not str(entry.get("path", "")).startswith("/v2/log-marker/")]
        if time.monotonic() > deadline:
            raise AssertionError(f"the marker request {marker} never showed up in the access log")
        time.sleep(0.05)


# TLS


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the test CA's certificate (PEM)
    cert: Path  # the server's certificate for 127.0.0.1 and localhost, signed by the CA
    key: Path
    cert_dir: Path  # a containers-style certs.d directory: holds ca.crt only

    def server_args(self) -> list[str]:
        return ["--tls-cert", str(self.cert), "--tls-key", str(self.key)]


def make_tls(folder: Path) -> TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1, made with ``cryptography``."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
                    signer: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                              key_encipherment=False, data_encipherment=False, key_agreement=False,
                              encipher_only=False, decipher_only=False), critical=True)
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                             x509.DNSName("localhost")]), critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = certificate("cargohold interop test CA", ca_key, "cargohold interop test CA", ca_key, ca=True)
    server_cert = certificate("127.0.0.1", server_key, "cargohold interop test CA", ca_key, ca=False)
    files = TlsFiles(folder / "ca.crt", folder / "server.crt", folder / "server.key", folder / "certs.d")
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    files.cert_dir.mkdir()
    shutil.copy(files.ca, files.cert_dir / "ca.crt")
    return files
