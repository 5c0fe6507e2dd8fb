"""The floor for a pull on this machine: the least a client can do to pull an image into an OCI layout.

    python -m bench.raw_pull HOST:PORT/REPOSITORY:TAG DEST [--jobs 4] [--no-fsync] [--no-hash]

No client library: the manifest and each blob are one GET on a plain keep-alive
socket (HTTP/1.1, plain HTTP only, no auth, no redirects), the body is read with
``recv_into`` into a reused buffer, hashed (sha256, checked against the digest),
written to a temporary file beside its final name, fsynced, and renamed in;
index.json is written last. That is what ``skopeo copy docker://… oci:…`` and
``cargohold pull`` do for each blob, without anything else (no cache, no
retries, no resuming, no manifest parsing beyond the blob list). Its wall time,
as a whole process, is what the machine's cores, loopback and disk allow; a
client's time beyond it is the client's own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BUFFER = 4 << 20
ACCEPT = ("application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, "
          "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json")


class Conn:
    """One keep-alive HTTP/1.1 connection that reads bodies with a Content-Length into a caller's buffer."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.host = f"{host}:{port}"

    def get(self, path: str, accept: str = "*/*") -> tuple[dict[str, str], bytes, int]:
        """Send a GET; the headers, the body bytes read with them, and the Content-Length."""
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nAccept: {accept}\r\n\r\n".encode())
        data = b""
        while (end := data.find(b"\r\n\r\n")) < 0:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed before an answer")
            data += chunk
        status_line, *lines = data[:end].decode("latin-1").split("\r\n")
        if status_line.split()[1] != "200":
            raise RuntimeError(f"GET {path}: {status_line}")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return headers, data[end + 4:], int(headers["content-length"])

    def small(self, path: str, accept: str) -> tuple[dict[str, str], bytes]:
        headers, body, length = self.get(path, accept)
        while len(body) < length:
            chunk = self.sock.recv(length - len(body))
            if not chunk:
                raise ConnectionError("closed in a body")
            body += chunk
        return headers, body


_local = threading.local()


def _fetch(host: str, port: int, repository: str, blobs: Path, digest: str, size: int,
           hashing: bool, fsync: bool) -> None:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = Conn(host, port)
        _local.buffer = memoryview(bytearray(BUFFER))
    view: memoryview = _local.buffer
    _, head, length = conn.get(f"/v2/{repository}/blobs/{digest}")
    if length != size:
        raise RuntimeError(f"{digest}: {length} bytes, not {size}")
    hasher = hashlib.sha256()
    hex_ = digest.split(":", 1)[1]
    tmp = blobs / f".{hex_}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        left = length
        if head:
            hasher.update(head) if hashing else None
            os.write(fd, head)
            left -= len(head)
        while left:
            filled = 0
            while filled < len(view) and left:
                n = conn.sock.recv_into(view[filled:], min(len(view) - filled, left))
                if not n:
                    raise ConnectionError(f"{digest}: closed {left} bytes early")
                filled += n
                left -= n
            if hashing:
                hasher.update(view[:filled])
            written = 0
            while written < filled:
                written += os.write(fd, view[written:filled])
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    if hashing and hasher.hexdigest() != hex_:
        tmp.unlink()
        raise RuntimeError(f"{digest}: digest mismatch")
    os.replace(tmp, blobs / hex_)


def pull(reference: str, dest: Path, jobs: int = 4, hashing: bool = True, fsync: bool = True) -> str:
    """Pull one image manifest (not an index) into the layout ``dest``; returns the manifest digest."""
    address, _, rest = reference.partition("/")
    repository, _, tag = rest.rpartition(":")
    host, _, port = address.rpartition(":")
    conn = Conn(host, int(port))
    headers, raw = conn.small(f"/v2/{repository}/manifests/{tag}", ACCEPT)
    manifest = json.loads(raw)
    if "layers" not in manifest:
        raise SystemExit("raw_pull: image manifests only")
    media_type = headers.get("content-type", manifest.get("mediaType", ""))
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    wanted = [(d["digest"], d["size"]) for d in [manifest["config"], *manifest["layers"]]]
    with ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(_fetch, host, int(port), repository, blobs, d, s, hashing, fsync) for d, s in wanted]
        for future in futures:
            future.result()
    hex_ = digest.split(":", 1)[1]
    (blobs / hex_).write_bytes(raw)
    index = {"schemaVersion": 2, "manifests": [{"mediaType": media_type, "digest": digest, "size": len(raw),
                                                "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}
    (dest / "index.json").write_text(json.dumps(index))
    return digest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.raw_pull", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reference", help="HOST:PORT/REPOSITORY:TAG (plain HTTP)")
    parser.add_argument("dest", type=Path, help="OCI layout directory to write")
    parser.add_argument("--jobs", type=int, default=4, help="parallel blob downloads (default 4)")
    parser.add_argument("--no-fsync", dest="fsync", action="store_false", help="do not fsync each blob")
    parser.add_argument("--no-hash", dest="hashing", action="store_false", help="do not hash the blobs")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    digest = pull(args.reference, args.dest, args.jobs, args.hashing, args.fsync)
    print(f"{digest} {time.perf_counter() - started:.3f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
