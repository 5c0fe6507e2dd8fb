"""An upstream's failure as the spec's error for the client of the cache."""

from __future__ import annotations

from typing import Final

from ..errcodes import BlobUnknown, ManifestUnknown, NameUnknown, RegistryError, TooManyRequests, Unavailable
from .upstream import UpstreamError, UpstreamRefused

#: the upstream's "not found" codes we answer with as they are
_UNKNOWN: Final[dict[str, type[RegistryError]]] = {
    "NAME_UNKNOWN": NameUnknown, "MANIFEST_UNKNOWN": ManifestUnknown, "BLOB_UNKNOWN": BlobUnknown,
}


def upstream_failure(
    exc: UpstreamError | UpstreamRefused, proxy: str, unknown: type[RegistryError], detail: dict[str, str],
) -> RegistryError:
    """429 -> TOOMANYREQUESTS; unreachable, timeouts, 5xx -> UNAVAILABLE; 404 -> the upstream's own unknown
    code (else ``unknown``); 401/403, the upstream refusing the cache's own credentials -> UNAVAILABLE."""
    if isinstance(exc, UpstreamError):
        if exc.status == 429:
            headers = {"Retry-After": str(round(exc.retry_after))} if exc.retry_after is not None else None
            return TooManyRequests(f"upstream of {proxy!r} is rate limiting this cache; try again later",
                                   detail=detail, headers=headers)
        return Unavailable(f"upstream of {proxy!r} is unavailable: {exc}", detail=detail)
    if exc.status == 404:
        return _UNKNOWN.get(exc.code or "", unknown)(detail=detail)
    if exc.status in (401, 403):
        return Unavailable(f"upstream of {proxy!r} refused this cache's credentials ({exc.status}"
                           f" {exc.code or ''}); the cache's configuration must be fixed", detail=detail)
    return Unavailable(f"upstream of {proxy!r} refused the request: {exc}", detail=detail)
