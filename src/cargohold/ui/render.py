"""Pages as responses: Jinja2 templates (autoescaped, always), and the headers every UI answer carries."""

from __future__ import annotations

import time
from http.cookies import SimpleCookie
from typing import Any, Final
from urllib.parse import quote, urlencode

import jinja2

from ..http import Response
from ..sizes import human_size

#: on every UI answer: nothing but the registry's own files, never framed, no sniffing, no leaked URLs
SECURITY_HEADERS: Final = (
    ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
)


def _when(seconds: int | None) -> str:
    if seconds is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def _size(size: int | None) -> str:
    return "—" if size is None else human_size(size)


def _path(text: str) -> str:
    """A repository name or reference inside a path: its slashes kept, anything else quoted."""
    return quote(text, safe="/:@")


def _query(values: dict[str, Any]) -> str:
    return urlencode({key: value for key, value in values.items() if value not in (None, "")})


_environment: Final = jinja2.Environment(
    loader=jinja2.PackageLoader("cargohold.ui", "templates"),
    autoescape=True,
    # pushed documents may lack any field: a missing one renders empty
    undefined=jinja2.ChainableUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_environment.filters.update(when=_when, size=_size, path=_path, query=_query)


def secured(response: Response) -> Response:
    for name, value in SECURITY_HEADERS:
        response.header(name, value)
    return response


def page(template: str, status: int = 200, **context: Any) -> Response:
    body = _environment.get_template(template).render(**context).encode()
    response = Response(status, [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store")], body)
    return secured(response)


def redirect(location: str) -> Response:
    """303: the browser GETs ``location`` (after a form's POST too)."""
    return secured(Response(303, [(b"location", location.encode("latin-1", "replace"))]))


def set_cookie(response: Response, name: str, value: str, *, max_age: int, secure: bool) -> Response:
    """A cookie for the UI's paths only, out of scripts' reach, never sent from another site."""
    attributes = f"{name}={value}; Path=/ui; Max-Age={max_age}; HttpOnly; SameSite=Strict"
    return response.header("Set-Cookie", attributes + ("; Secure" if secure else ""))


def cookie(headers: dict[str, str], name: str) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # noqa: BLE001 - a malformed Cookie header is as good as none
        return None
    found = jar.get(name)
    return found.value if found is not None else None
