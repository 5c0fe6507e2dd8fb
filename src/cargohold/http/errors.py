"""The one error writer: every error answer is ``{"errors": [...]}`` with the status from ``errcodes``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..errcodes import OTHER_STATUSES, RegistryError, Unsupported
from .response import Response


def error_response(failure: RegistryError, /, **fields: Any) -> Response:
    """The answer to ``failure``: its envelope, status and headers (``fields`` go beside ``errors``)."""
    return envelope_response(failure.envelope_entries(), failure.status, failure.headers, **fields)


def code_response(code: str, message: str, detail: Any = None) -> Response:
    """The answer for a code outside the spec (see ``errcodes.OTHER_STATUSES``)."""
    entry: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        entry["detail"] = detail
    return envelope_response([entry], OTHER_STATUSES.get(code, 400))


def not_found(path: str) -> Response:
    """No route matches ``path``."""
    return code_response("NOT_FOUND", "no such API endpoint", path)


def method_not_allowed(method: str, route: str, allowed: Iterable[str]) -> Unsupported:
    """The failure for a method a route does not answer, naming those it does in ``Allow``."""
    return Unsupported(f"{method} is not supported on {route}", headers={"Allow": ", ".join(sorted(allowed))})


def envelope_response(
    entries: list[dict[str, Any]], status: int, headers: Mapping[str, str] | None = None, /, **fields: Any
) -> Response:
    """Every error answer is written here: ``{"errors": entries, **fields}``."""
    response = Response.json({**fields, "errors": entries}, status=status)
    for name, value in (headers or {}).items():
        response.header(name, value)
    return response
