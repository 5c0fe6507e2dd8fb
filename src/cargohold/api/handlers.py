"""One function per (route, method): parse the request, call one service method, set headers."""

from __future__ import annotations

import re
from typing import Any, Final

from ..digest import Digest
from ..errcodes import (
    BlobUnknown,
    BlobUploadInvalid,
    DigestInvalid,
    PaginationNumberInvalid,
    RangeInvalid,
    SizeInvalid,
)
from ..formats import MediaType
from ..http import Response
from ..service import RegistryService as Registry
from ..service import media_type_warning, parse_accepts, parse_algorithm, parse_reference
from ..service.manifests import StaleManifest
from . import routes
from .health import get_healthz, get_readyz
from .request import RegistryRequest as Request
from .routes import Handler, url_for

# ASCII digits, at most 19 (any offset below 2**63): a longer number is malformed, not an int() to attempt
_NUMBER: Final = r"[0-9]{1,19}"
_CONTENT_RANGE: Final = re.compile(rf"(?:bytes[ =])?({_NUMBER})-({_NUMBER})(?:/(?:{_NUMBER}|\*))?")
_RANGE: Final = re.compile(r"bytes=([0-9]{0,19})-([0-9]{0,19})")
_PAGE_SIZE: Final = re.compile(_NUMBER)
#: largest page we hand out when a client asks for more (or gives no n)
MAX_PAGE: Final = 10_000


def _upload_headers(registry: Registry, response: Response, name: str, upload_id: str, size: int) -> Response:
    # Distribution reports "0-0" for an empty upload; clients expect that form.
    response = (
        response.header("location", url_for(routes.UPLOAD, name=name, uuid=upload_id))
        .header("range", f"0-{max(size - 1, 0)}")
        .header("docker-upload-uuid", upload_id)
    )
    minimum = registry.chunk_min_length
    return response if minimum is None else response.header("oci-chunk-min-length", str(minimum))


def _blob_created(name: str, digest: str) -> Response:
    return (
        Response(201)
        .header("location", url_for(routes.BLOB, name=name, digest=digest))
        .header("docker-content-digest", digest)
    )


# base


async def get_base(registry: Registry, request: Request) -> Response:
    return Response.json({})


# blobs


async def head_blob(registry: Registry, request: Request) -> Response:
    try:
        digest, size = await registry.blob_size(request.params["name"], request.params["digest"])
    except BlobUnknown:
        digest, size = await registry.pull_through_blob_size(request.params["name"], request.params["digest"])
    return (
        Response(200, length=size)
        .header("content-type", "application/octet-stream")
        .header("docker-content-digest", str(digest))
        .header("accept-ranges", "bytes")
    )


async def get_blob(registry: Registry, request: Request) -> Response:
    try:
        digest, size = await registry.blob_size(request.params["name"], request.params["digest"])
    except BlobUnknown:
        return await _pull_through_blob(registry, request)
    return await _stored_blob(registry, request, digest, size)


async def _stored_blob(registry: Registry, request: Request, digest: Digest, size: int) -> Response:
    status, start, length = _span(request, size)
    body = await registry.blob_body(digest, start, length)
    if start == 0 and request.method == "GET":  # a download counts once, not once per range of it
        registry.blob_pulled(request.params["name"], digest, size)
    if body.redirect is not None:
        return Response(307).header("location", body.redirect).header("docker-content-digest", str(digest))
    response = Response(status, length=size if length is None else length, path=body.local_path, stream=body.stream)
    return _blob_headers(response, digest, size, start, length)


async def _pull_through_blob(registry: Registry, request: Request) -> Response:
    """A blob the repository does not link, from a pull-through cache's upstream (else BLOB_UNKNOWN)."""
    name, digest_text = request.params["name"], request.params["digest"]
    status, start, length = 200, 0, None
    if request.headers.get("range") is not None:
        _, size = await registry.pull_through_blob_size(name, digest_text)
        status, start, length = _span(request, size)
    digest, size, chunks = await registry.pull_through_blob(name, digest_text, start, length)
    if chunks is None:  # fetched and linked already
        return await _stored_blob(registry, request, digest, size)
    if start == 0 and request.method == "GET":
        registry.blob_pulled(name, digest, size)
    response = Response(status, length=size if length is None else length, stream=chunks)
    return _blob_headers(response, digest, size, start, length)


def _span(request: Request, size: int) -> tuple[int, int, int | None]:
    """(status, start, length: None for the rest) of a blob GET's answer, from its Range header."""
    range_header = request.headers.get("range")
    if range_header is None:
        return 200, 0, None
    span = _parse_range(range_header, size)
    if span is None:
        raise RangeInvalid("requested range not satisfiable", headers={"content-range": f"bytes */{size}"})
    start, end = span
    if (start, end) == (0, size - 1):
        return 200, 0, None
    return 206, start, end - start + 1


def _blob_headers(response: Response, digest: Digest, size: int, start: int, length: int | None) -> Response:
    if response.status == 206:
        response.header("content-range", f"bytes {start}-{start + (length or 0) - 1}/{size}")
    return (
        response.header("content-type", "application/octet-stream")
        .header("docker-content-digest", str(digest))
        .header("accept-ranges", "bytes")
        .header("etag", f'"{digest}"')
        .header("cache-control", "max-age=31536000")
    )


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """A single ``bytes=`` range clipped to the blob; None if unsatisfiable or malformed."""
    found = _RANGE.fullmatch(value.strip())
    if found is None or size == 0:
        return None
    first, last = found.groups()
    if first == "" and last == "":
        return None
    if first == "":
        start, end = max(size - int(last), 0), size - 1
    else:
        start = int(first)
        end = size - 1 if last == "" else min(int(last), size - 1)
    if start > end or start >= size:
        return None
    return start, end


async def delete_blob(registry: Registry, request: Request) -> Response:
    await registry.delete_blob(request.params["name"], request.params["digest"])
    return Response(202)


# uploads


async def post_upload(registry: Registry, request: Request) -> Response:
    name = request.params["name"]
    algorithm = parse_algorithm(request.query("digest-algorithm"))
    mount = request.query("mount")
    if mount is not None:
        mounted = await _mount(registry, request, name, mount)
        if mounted is not None:
            return _blob_created(name, str(mounted))
    digest = request.query("digest")
    if digest is not None:
        length = request.content_length()
        # hashed as the digest names unless the client named an algorithm (then they must agree)
        named = algorithm if request.query("digest-algorithm") is not None else None
        created = await registry.upload_blob(name, digest, request.stream(), length, named)
        return _blob_created(name, str(created))
    upload_id = await registry.start_upload(name, algorithm)
    return _upload_headers(registry, Response(202), name, upload_id, 0)


async def _mount(registry: Registry, request: Request, name: str, digest: str) -> Digest | None:
    """A cross-repository mount; None (then a plain upload) if the caller may not pull the blob anywhere.

    With ``from``, only from there, and only if the token grants pull on it (as
    Distribution does). Without, from any repository the caller may pull.
    """
    source = request.query("from")
    if source is not None:
        return await registry.mount_blob(name, source, digest) if request.grant.can_pull(source) else None
    return await registry.mount_found_blob(name, digest, await request.access.pull_filter(request.grant))


async def patch_upload(registry: Registry, request: Request) -> Response:
    name, upload_id = request.params["name"], request.params["uuid"]
    start = length = None
    content_range = request.headers.get("content-range")
    if content_range is not None:
        found = _CONTENT_RANGE.fullmatch(content_range.strip())
        if found is None:
            raise RangeInvalid(f"malformed Content-Range {content_range[:80]!r}")
        start, end = int(found.group(1)), int(found.group(2))
        if end < start:
            raise RangeInvalid(f"malformed Content-Range {content_range[:80]!r}")
        length = end - start + 1
    declared = request.content_length()
    if declared is not None:
        if length is not None and declared != length:
            raise SizeInvalid(f"Content-Length {declared} does not match Content-Range {content_range}")
        length = declared
    size = await registry.append_upload(name, upload_id, request.stream(), start, length)
    return _upload_headers(registry, Response(202), name, upload_id, size)


async def put_upload(registry: Registry, request: Request) -> Response:
    name, upload_id = request.params["name"], request.params["uuid"]
    digest = request.query("digest")
    if not digest:
        raise DigestInvalid("the digest query parameter is required to complete an upload")
    created = await registry.complete_upload(name, upload_id, digest, request.stream(), request.content_length())
    return _blob_created(name, str(created))


async def get_upload(registry: Registry, request: Request) -> Response:
    name, upload_id = request.params["name"], request.params["uuid"]
    size = await registry.upload_size(name, upload_id)
    return _upload_headers(registry, Response(204), name, upload_id, size)


async def delete_upload(registry: Registry, request: Request) -> Response:
    await registry.cancel_upload(request.params["name"], request.params["uuid"])
    return Response(204)


async def post_upload_unsupported(registry: Registry, request: Request) -> Response:
    raise BlobUploadInvalid("POST is not allowed on an upload session; use PATCH or PUT")


# manifests


async def get_manifest(registry: Registry, request: Request) -> Response:
    name, reference = request.params["name"], parse_reference(request.params["reference"])
    accepts = parse_accepts(request.headers.get("accept"), request.headers.get("user-agent"))
    found = await registry.get_manifest(name, reference, accepts)
    if request.method == "GET":  # a HEAD (is it there? which digest?) is no pull
        registry.manifest_pulled(name, reference, found)
    response = (
        Response(200, body=found.content)
        .header("content-type", found.media_type)
        .header("docker-content-digest", found.digest)
        .header("etag", f'"{found.digest}"')
    )
    if isinstance(found, StaleManifest):
        response.warning(found.warning)
    warning = media_type_warning(found.media_type)
    return response.warning(warning) if warning else response


async def put_manifest(registry: Registry, request: Request) -> Response:
    name, reference = request.params["name"], parse_reference(request.params["reference"])
    stored = await registry.put_manifest(
        name, reference, request.headers.get("content-type"), request.content_length(), request.body,
        request.query_all("tag"),
    )
    response = (
        Response(201)
        .header("location", url_for(routes.MANIFEST, name=name, reference=stored.digest))
        .header("docker-content-digest", stored.digest)
    )
    if stored.subject is not None:
        response.header("oci-subject", stored.subject)
    for tag in stored.tags:
        response.header("oci-tag", tag)
    for warning in stored.warnings:
        response.warning(warning)
    return response


async def delete_manifest(registry: Registry, request: Request) -> Response:
    await registry.delete_manifest(request.params["name"], parse_reference(request.params["reference"]))
    return Response(202)


# listings


def _page(request: Request) -> tuple[int | None, str | None]:
    text = request.query("n")
    last = request.query("last") or None
    if text is None or text == "":
        return None, last
    if _PAGE_SIZE.fullmatch(text) is None:
        raise PaginationNumberInvalid(f"n must be a whole number below 2**63, not {text[:40]!r}")
    return min(int(text), MAX_PAGE), last


def _paged(items: list[str], limit: int | None, path: str, key: str, body: dict[str, Any]) -> Response:
    more = limit is not None and len(items) > limit
    if more:
        items = items[:limit]
    body[key] = items
    response = Response.json(body)
    if more and items:
        response.header("link", f'<{path}?n={limit}&last={items[-1]}>; rel="next"')
    return response


async def get_tags(registry: Registry, request: Request) -> Response:
    name = request.params["name"]
    limit, last = _page(request)
    if limit == 0:
        await registry.tags(name, 0, last)
        return Response.json({"name": name, "tags": []})
    tags = await registry.tags(name, None if limit is None else limit + 1, last)
    return _paged(tags, limit, url_for(routes.TAGS, name=name), "tags", {"name": name})


async def get_catalog(registry: Registry, request: Request) -> Response:
    limit, last = _page(request)
    if limit == 0:
        return Response.json({"repositories": []})
    if request.grant.everything:
        names = await registry.catalog(None if limit is None else limit + 1, last)
    else:
        # Only what the caller may pull; filtered before paging so pages stay full.
        may_see = await request.access.catalog_filter(request.grant)
        names = await registry.catalog_where(may_see, None if limit is None else limit + 1, last)
    return _paged(names, limit, url_for(routes.CATALOG), "repositories", {})


async def get_referrers(registry: Registry, request: Request) -> Response:
    artifact_type = request.query("artifactType") or None
    found = await registry.referrers(request.params["name"], request.params["digest"], artifact_type)
    index = {
        "schemaVersion": 2,
        "mediaType": MediaType.OCI_INDEX.value,
        "manifests": [descriptor.to_json() for descriptor in found],
    }
    response = Response.json(index, content_type=MediaType.OCI_INDEX.value)
    if artifact_type is not None:
        response.header("oci-filters-applied", "artifactType")
    return response


HANDLERS: Final[dict[str, dict[str, Handler]]] = {
    routes.BASE: {"GET": get_base},
    routes.CATALOG: {"GET": get_catalog},
    routes.TAGS: {"GET": get_tags},
    routes.MANIFEST: {"GET": get_manifest, "PUT": put_manifest, "DELETE": delete_manifest},
    routes.BLOB: {"GET": get_blob, "DELETE": delete_blob},
    routes.UPLOADS: {"POST": post_upload},
    routes.UPLOAD: {"GET": get_upload, "PATCH": patch_upload, "PUT": put_upload, "DELETE": delete_upload},
    routes.REFERRERS: {"GET": get_referrers},
    routes.HEALTHZ: {"GET": get_healthz},
    routes.READYZ: {"GET": get_readyz},
}
# HEAD is GET without a body (the sender drops it), except for blobs, where it skips opening the file.
for _methods in HANDLERS.values():
    if "GET" in _methods:
        _methods.setdefault("HEAD", _methods["GET"])
HANDLERS[routes.BLOB]["HEAD"] = head_blob
