"""Hostile or broken requests get the spec's error, never a 500 or a traceback."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.servers import CargoholdServer

from .helpers import OCI_LAYER, OCI_MANIFEST, codes, descriptor, image_manifest, push_blob, put_manifest, sha256

HUGE = "9" * 5000  # beyond Python's 4,300-digit limit on int()


def raw_request(server: CargoholdServer, head: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` (request line and headers) and ``body`` as given; the response's status, headers and body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {reply!r}"
            reply += chunk
        top, _, rest = reply.partition(b"\r\n\r\n")
        lines = top.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            assert chunk
            rest += chunk
    return int(lines[0].split()[1]), headers, rest


def error_codes(body: bytes) -> list[str]:
    return [e["code"] for e in json.loads(body)["errors"]]


# nesting and size of JSON


def test_deeply_nested_manifest_is_manifest_invalid(client: httpx.Client, repo: str) -> None:
    deep = "[" * 2000 + "]" * 2000
    for raw in (
        # 8 KB nesting where a descriptor belongs, and where an unknown field may hold anything
        f'{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{deep},"layers":[]}}',
        image_manifest(client, repo)[:-1].decode() + f',"extra":{deep}}}',
    ):
        r = put_manifest(client, repo, "deep", raw.encode(), OCI_MANIFEST)
        assert r.status_code == 400 and codes(r) == ["MANIFEST_INVALID"], r.text
    assert client.get(f"/v2/{repo}/manifests/deep").status_code == 404


def test_manifest_nested_as_deep_as_needed_is_accepted(client: httpx.Client, repo: str) -> None:
    # 64 levels (the bound) in an annotation-free extension field still parse
    nested = "[" * 63 + "]" * 63
    raw = image_manifest(client, repo)[:-1].decode() + f',"extra":{nested}}}'
    r = put_manifest(client, repo, "nested", raw.encode(), OCI_MANIFEST)
    assert r.status_code == 201, r.text


def test_too_many_descriptors_is_manifest_invalid(client: httpx.Client, repo: str) -> None:
    layer = descriptor(OCI_LAYER, b"one layer")
    config = descriptor("application/vnd.oci.image.config.v1+json", b"{}")
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer] * 10_001})
    r = put_manifest(client, repo, "many", raw.encode(), OCI_MANIFEST)
    assert r.status_code == 400 and codes(r) == ["MANIFEST_INVALID"], r.text
    assert "10001 entries" in r.json()["errors"][0]["message"]


# numbers too long for int()


def test_huge_content_range_on_patch_is_range_invalid(client: httpx.Client, repo: str) -> None:
    location = client.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
    for value in (f"0-{HUGE}", f"{HUGE}-{HUGE}", f"0-0/{HUGE}", "0-1_0"):
        r = client.patch(location, content=b"x", headers={"Content-Range": value})
        assert r.status_code == 416 and codes(r) == ["RANGE_INVALID"], (value, r.text)
        assert len(r.content) < 500  # the header is not echoed whole
    r = client.patch(location, content=b"x", headers={"Content-Range": "0-0"})
    assert r.status_code == 202, r.text


def test_huge_range_on_blob_get_is_range_invalid(client: httpx.Client, repo: str) -> None:
    digest = push_blob(client, repo, b"0123456789")
    for value in (f"bytes=0-{HUGE}", f"bytes={HUGE}-", f"bytes=-{HUGE}"):
        r = client.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": value})
        assert r.status_code == 416 and codes(r) == ["RANGE_INVALID"], (value, r.text)
        assert r.headers["content-range"] == "bytes */10"
    r = client.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": "bytes=2-4"})
    assert r.status_code == 206 and r.content == b"234"


@pytest.mark.parametrize("n", [HUGE, "1" * 20, "٣", "+5", "1_0", " 5", "-1"])
def test_bad_page_size_is_pagination_number_invalid(client: httpx.Client, repo: str, n: str) -> None:
    push_blob(client, repo, b"x")
    put_manifest(client, repo, "v1", image_manifest(client, repo), OCI_MANIFEST)
    for path in ("/v2/_catalog", f"/v2/{repo}/tags/list"):
        r = client.get(path, params={"n": n})
        assert r.status_code == 400 and codes(r) == ["PAGINATION_NUMBER_INVALID"], (path, r.text)
        assert len(r.content) < 500
    assert client.get(f"/v2/{repo}/tags/list", params={"n": "9" * 19}).json()["tags"] == ["v1"]


# bodies the HTTP layer cannot decode


def test_malformed_chunked_body_is_400(registry: CargoholdServer, client: httpx.Client, repo: str) -> None:
    location = urlsplit(client.post(f"/v2/{repo}/blobs/uploads/").headers["location"]).path
    chunked = "Transfer-Encoding: chunked\nConnection: close\n"
    status, headers, body = raw_request(
        registry, f"PATCH {location} HTTP/1.1\nHost: x\n{chunked}", b"zz\r\nabc\r\n0\r\n\r\n"
    )
    assert status == 400 and error_codes(body) == ["BLOB_UPLOAD_INVALID"], body
    assert headers["content-type"] == "application/json"
    status, _, body = raw_request(
        registry, f"PUT /v2/{repo}/manifests/v1 HTTP/1.1\nHost: x\nContent-Type: {OCI_MANIFEST}\n{chunked}",
        b"zz\r\n{}\r\n0\r\n\r\n",
    )
    assert status == 400 and error_codes(body) == ["MANIFEST_INVALID"], body
    # the upload is still there and takes a well-formed chunk
    status, _, body = raw_request(
        registry, f"PATCH {location} HTTP/1.1\nHost: x\n{chunked}", b"3\r\nabc\r\n0\r\n\r\n"
    )
    assert status == 202, body


# grammars: a trailing newline is not part of a name, tag, digest or id


def test_tag_with_trailing_newline_is_tag_invalid(client: httpx.Client, repo: str) -> None:
    raw = image_manifest(client, repo)
    r = put_manifest(client, repo, "v1%0A", raw, OCI_MANIFEST)
    assert r.status_code == 400 and codes(r) == ["TAG_INVALID"], r.text
    assert put_manifest(client, repo, "v1", raw, OCI_MANIFEST).status_code == 201
    assert client.get(f"/v2/{repo}/tags/list").json()["tags"] == ["v1"]
    r = client.get(f"/v2/{repo}/manifests/v1%0A")
    assert r.status_code == 404 and codes(r) == ["MANIFEST_UNKNOWN"], r.text


def test_name_digest_and_upload_with_trailing_newline(client: httpx.Client, repo: str) -> None:
    digest = push_blob(client, repo, b"newline")
    r = client.get(f"/v2/{repo}%0A/tags/list")
    assert r.status_code == 400 and codes(r) == ["NAME_INVALID"], r.text
    r = client.post(f"/v2/{repo}%0A/blobs/uploads/")
    assert r.status_code == 400 and codes(r) == ["NAME_INVALID"], r.text
    r = client.get(f"/v2/{repo}/blobs/{digest}%0A")
    assert r.status_code == 400 and codes(r) == ["DIGEST_INVALID"], r.text
    r = client.get(f"/v2/{repo}/manifests/{sha256(b'x')}%0A")
    assert r.status_code == 400 and codes(r) == ["DIGEST_INVALID"], r.text
    location = client.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
    r = client.get(f"{location}%0A")
    assert r.status_code == 404 and codes(r) == ["BLOB_UPLOAD_UNKNOWN"], r.text
    r = client.get(f"/v2/{repo}/tags/list%0A")
    assert r.status_code == 404, r.text
