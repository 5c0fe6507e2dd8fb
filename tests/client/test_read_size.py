"""The client's large socket reads (pool.LargeReads) are its own: other httpx users keep httpcore's."""

from __future__ import annotations

import os
import time

import httpcore
import httpx

from cargohold.client import RegistryClient
from cargohold.client.pool import HTTP_READ_SIZE

from .inprocess import RegistryHandler, serving

BODY = os.urandom(4 * 1024 * 1024)
HTTPCORE_READ = 64 * 1024


class Handler(RegistryHandler):
    def do_GET(self) -> None:
        self.reply(200, BODY)


def largest_chunk(http: httpx.Client, url: str) -> int:
    """The largest piece the body arrived in (one piece per socket read)."""
    with http.stream("GET", url) as response:
        time.sleep(0.2)  # the body fills the socket's buffer: a read may take more than 64 KiB
        pieces = list(response.iter_raw())
    assert b"".join(pieces) == BODY
    return max(len(piece) for piece in pieces)


def test_large_reads_are_this_clients_own(client: RegistryClient) -> None:
    with serving(Handler) as host, httpx.Client(trust_env=False) as other:
        url = f"http://{host}/v2/r/blobs/x"
        assert HTTPCORE_READ < largest_chunk(client.http, url) <= HTTP_READ_SIZE
        assert largest_chunk(other, url) <= HTTPCORE_READ
    assert httpcore.HTTP11Connection.READ_NUM_BYTES == HTTPCORE_READ  # nothing process-wide was changed
