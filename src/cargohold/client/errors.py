"""Client-side failures, and the parser of the registry's ``{"errors": [...]}`` envelope.

A registry's error response becomes a :class:`RegistryResponseError` that is
*also* an instance of the spec's exception class from :mod:`cargohold.errcodes`
for its first error code, so both of these work::

    except errcodes.ManifestUnknown: ...        # by spec code
    except RegistryResponseError as e: e.errors  # every diagnostic, the status, the URL

Exception tree::

    ClientError
    ├── RegistryResponseError      an HTTP error answer (status, errors, method, url)
    │   └── one subclass per spec code, each also a cargohold.errcodes.RegistryError
    ├── TransportError             no answer at all: connection refused, TLS, timeout
    │   └── TLSError               certificate not trusted, handshake refused, not TLS at all
    ├── AuthError                  the token service refused or answered nonsense
    ├── DigestMismatch             bytes received do not hash to the digest expected
    ├── SizeMismatch               bytes received are not the size expected
    ├── LayoutError                an OCI layout or docker-archive is missing or malformed
    ├── ManifestTooLarge           a manifest bigger than any real one (a hostile endpoint)
    ├── PlatformNotFound           an index has no image for the platform asked for
    ├── CredentialHelperError      a docker-credential-* program failed
    └── UnsupportedOperation       the registry cannot do this (e.g. schema 1 re-signing off)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import httpx

from .. import errcodes, jsontext
from ..digest import Digest

#: the most of an error body we read: ggcr's limit; a proxy's HTML page needs no more
ERROR_BODY_LIMIT: Final = 64 * 1024


class ClientError(Exception):
    """Base class of everything the client raises on purpose."""


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One entry of the spec's ``errors`` list."""

    code: str
    message: str
    detail: Any = None

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code


class RegistryResponseError(ClientError):
    """The registry answered with an error status.

    ``code`` is the first spec code (``None`` when the body carried none);
    ``temporary`` says whether retrying later may help; ``retry_after`` is the
    answer's ``Retry-After`` header as sent, if any.
    """

    code_name: str | None

    def __init__(
        self,
        status: int,
        errors: tuple[Diagnostic, ...],
        method: str,
        url: str,
        retry_after: str | None = None,
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        self.errors = errors
        self.method = method
        self.url = url
        self.code_name = errors[0].code if errors else None
        self.message = "; ".join(str(e) for e in errors) or f"HTTP {status}"
        self.detail = errors[0].detail if errors else None
        Exception.__init__(self, f"{self.message} ({method} {url} -> {status})")

    @property
    def temporary(self) -> bool:
        """True for throttling and server-side failures, where a retry may succeed.

        A registry out of space is not: it stays full until someone frees space.
        """
        if self.status == 507 or self.code_name == "INSUFFICIENT_STORAGE":
            return False
        return self.status == 429 or self.status >= 500 or self.code_name == "TOOMANYREQUESTS"


def _response_type(spec: type[errcodes.RegistryError]) -> type[RegistryResponseError]:
    name = spec.__name__
    return type(name, (RegistryResponseError, spec), {"__doc__": f"{spec.code.name} from a registry."})


#: spec code name -> exception class raised for it
RESPONSE_ERRORS: Final[dict[str, type[RegistryResponseError]]] = {
    code: _response_type(spec) for code, spec in errcodes.ERROR_TYPES.items()
}

# When the body names no code (HEAD has no body; proxies send HTML) the status decides.
_STATUS_CODES: Final[dict[int, str]] = {
    401: "UNAUTHORIZED",
    403: "DENIED",
    429: "TOOMANYREQUESTS",
    503: "UNAVAILABLE",
    405: "UNSUPPORTED",
    507: "INSUFFICIENT_STORAGE",
}


class TransportError(ClientError):
    """The request got no HTTP answer (connection, TLS, timeout)."""


class TLSError(TransportError):
    """TLS failed: the server's certificate is not trusted, or the handshake was refused."""


class AuthError(ClientError):
    """Authentication could not be negotiated (token service unreachable or malformed answer)."""


class DigestMismatch(ClientError):
    """Content does not hash to the digest it was fetched by."""

    def __init__(self, what: str, expected: Digest | str, got: Digest | str) -> None:
        self.expected = str(expected)
        self.got = str(got)
        super().__init__(f"{what}: digest mismatch, expected {self.expected}, got {self.got}")


class SizeMismatch(ClientError):
    """Content is not the size its descriptor declares."""

    def __init__(self, what: str, expected: int, got: int) -> None:
        self.expected = expected
        self.got = got
        super().__init__(f"{what}: size mismatch, expected {expected} bytes, got {got}")


class LayoutError(ClientError):
    """A local OCI image layout or docker-archive is missing or malformed."""


class PlatformNotFound(ClientError):
    """An index has no manifest for the requested platform."""


class CredentialHelperError(ClientError):
    """A ``docker-credential-*`` helper failed or is missing."""


class UnsupportedOperation(ClientError):
    """The operation cannot be done with this registry or this content."""


def _diagnostics(body: bytes) -> tuple[Diagnostic, ...]:
    try:
        document = jsontext.loads(body)
    except ValueError:
        return ()
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list):
        return ()
    found: list[Diagnostic] = []
    for entry in errors:
        if isinstance(entry, dict) and isinstance(entry.get("code"), str):
            found.append(Diagnostic(entry["code"], str(entry.get("message") or ""), entry.get("detail")))
    return tuple(found)


def error_for(response: httpx.Response, *, not_found: str | None = None) -> RegistryResponseError:
    """Build the typed exception for an error ``response``.

    ``not_found`` is the spec code to assume for a body-less 404 (HEAD requests),
    e.g. ``MANIFEST_UNKNOWN`` when a manifest was asked for.
    """
    body = b""
    if response.request.method != "HEAD":
        try:
            body = response.read()[:ERROR_BODY_LIMIT]
        except httpx.HTTPError:
            body = b""
    errors = _diagnostics(body)
    code = errors[0].code if errors else _STATUS_CODES.get(response.status_code)
    if code is None and response.status_code == 404:
        code = not_found
    if not errors and code is not None:
        errors = (
            Diagnostic(
                code, errcodes.ErrorCode[code].message if code in errcodes.ErrorCode.__members__ else ""
            ),
        )
    cls = RESPONSE_ERRORS.get(code or "", RegistryResponseError)
    return cls(response.status_code, errors, response.request.method, str(response.request.url),
               response.headers.get("Retry-After"))


def check(response: httpx.Response, *expected: int, not_found: str | None = None) -> httpx.Response:
    """Return ``response`` if its status is one of ``expected``, else raise its typed error."""
    if response.status_code in expected:
        return response
    raise error_for(response, not_found=not_found)


class ManifestTooLarge(ClientError):
    """A manifest is larger than any real one (:data:`cargohold.client.registry.MANIFEST_LIMIT`)."""
