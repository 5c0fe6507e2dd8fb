"""``BodyReader.read`` (client/direct.py), the pull-through cache's upstream reads, against a loopback server that
writes a blob's body on a script: in small writes with short pauses, with a long pause, or stalled; plain and TLS.

A read hands on a MiB at a time when the bytes come quickly (each piece costs the cache a hop between threads and
a send to its client), what has come when the next bytes are slow, and a timeout only after the transport's.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cargohold.client import TransportError
from cargohold.client.direct import GATHER_SECONDS, BodyReader, DirectPool
from cargohold.client.transport import TransportOptions

from .tlsfiles import make_tls_files

MIB = 1 << 20
#: (bytes, pause after them in seconds) for each write of a body
Script = list[tuple[bytes, float]]


@contextmanager
def scripted(script: Script, context: ssl.SSLContext | None = None) -> Iterator[str]:
    """A server on loopback answering each GET with a body of the script's bytes, written as it says; then it
    waits for the next request on the connection (so a stalled script keeps the connection open)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            stream = context.wrap_socket(conn, server_side=True) if context is not None else conn
            while not stop.is_set():
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = stream.recv(65536)
                    if not chunk:
                        return
                    head += chunk
                length = sum(len(data) for data, _ in script)
                stream.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % length)
                for data, pause in script:
                    stream.sendall(data)
                    if pause:
                        stop.wait(pause)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()


def _open(pool: DirectPool, url: str) -> BodyReader:
    body = pool.get(url, {})
    assert body is not None
    return body


def _pieces(body: BodyReader) -> list[bytes]:
    pieces = []
    while piece := body.read(MIB):
        pieces.append(piece)
    return pieces


def _trickle(total: int, write: int, pause: float) -> Script:
    data = bytes(range(256)) * (total // 256)
    return [(data[i : i + write], pause) for i in range(0, total, write)]


def test_bytes_that_come_quickly_are_handed_on_a_mib_at_a_time() -> None:
    # 16 KiB writes 2 ms apart: each used to be a piece of its own (128 for 2 MiB)
    script = _trickle(2 * MIB, 16 << 10, 0.002)
    pool = DirectPool(TransportOptions())
    with scripted(script) as host:
        body = _open(pool, f"http://{host}/v2/r/blobs/x")
        pieces = _pieces(body)
        body.close()
    assert b"".join(pieces) == b"".join(data for data, _ in script)
    assert len(pieces) <= 6, [len(p) for p in pieces]  # 2 when the writer never pauses past GATHER_SECONDS


def test_tls_records_are_joined_too(tmp_path: Path) -> None:
    # over TLS a read returns one record (16 KiB) at most, however fast the bytes come
    files = make_tls_files(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(files.server_cert, files.server_key)
    script = [(bytes(range(256)) * (2 * MIB // 256), 0.0)]
    pool = DirectPool(TransportOptions(ca_bundle=str(files.ca_cert)))
    with scripted(script, server) as host:
        body = _open(pool, f"https://{host}/v2/r/blobs/x")
        pieces = _pieces(body)
        body.close()
    assert b"".join(pieces) == script[0][0]
    assert len(pieces) <= 6, [len(p) for p in pieces]


def test_slow_bytes_are_handed_on_without_waiting_for_more() -> None:
    script = [(b"a" * 100, 1.0), (b"b" * 100, 0.0)]
    pool = DirectPool(TransportOptions())
    with scripted(script) as host:
        body = _open(pool, f"http://{host}/v2/r/blobs/x")
        started = time.monotonic()
        assert body.read(MIB) == b"a" * 100
        assert time.monotonic() - started < 0.5
        assert body.read(MIB) == b"b" * 100
        assert body.read(MIB) == b""
        body.close()


def test_a_stalled_body_fails_after_the_transports_timeout_not_the_gathering_pause() -> None:
    script = [(b"a" * 100, 0.3), (b"b" * 100, 60.0), (b"c", 0.0)]
    pool = DirectPool(TransportOptions(timeout=1.0))
    with scripted(script) as host:
        body = _open(pool, f"http://{host}/v2/r/blobs/x")
        assert body.read(MIB) == b"a" * 100  # after GATHER_SECONDS, not the 0.3 s pause
        assert body.read(MIB) == b"b" * 100  # the pause was shorter than the timeout: no error
        started = time.monotonic()
        with pytest.raises(TransportError):
            body.read(MIB)
        assert time.monotonic() - started >= 1.0 - GATHER_SECONDS


def test_a_socket_given_back_keeps_the_transports_timeout() -> None:
    script = _trickle(256 << 10, 16 << 10, 0.002)
    pool = DirectPool(TransportOptions(timeout=7.0))
    with scripted(script) as host:
        for _ in range(2):  # the second GET reuses the kept-alive socket
            body = _open(pool, f"http://{host}/v2/r/blobs/x")
            assert len(b"".join(_pieces(body))) == 256 << 10
            body.close()
        idle = [sock for sockets in pool._idle.values() for sock in sockets]
    assert len(idle) == 1 and idle[0].gettimeout() == 7.0
    pool.close()
