"""The UI's routes, in the API's one route table: login and logout, repositories, a repository's tags,
a manifest or index, and deletes behind a confirmation.

Every action is a plain form POST carrying the session's CSRF token; reads go through the service and
the metadata stores (:class:`~cargohold.metadata.sql_ui.SqlUiStore` for the listings), a delete through
the service call the API makes, so the audit log and the webhooks hear of it as of any other. A failure
is a page with the status the error table gives it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final
from urllib.parse import parse_qs, urlencode

from ..access_model import AccountKind
from ..api.admin_endpoints import ADMIN_ERRORS, AdminApi, Caller, error_code
from ..api.request import RegistryRequest
from ..api.routes import Endpoint, Route
from ..auth.access import Grant, ReadOnly, writable
from ..auth.setup import OwnTokens
from ..config import ServerConfig
from ..config.proxies import proxied_names
from ..errcodes import (
    OTHER_STATUSES,
    Denied,
    ManifestUnknown,
    NameUnknown,
    RegistryError,
    RequestUnsupported,
    SizeInvalid,
)
from ..formats import Descriptor
from ..http import Response, route
from ..metadata.factory import open_ui_store
from ..metadata.sql_ui import INDEX_TYPES, RepositoryRow, SqlUiStore, TagRow, platform_name
from ..reference import DigestRef, TagRef, is_tag
from ..service import BACKEND_ERRORS, Registry
from ..service.common import parse_digest, parse_reference
from .render import cookie, page, redirect, secured, set_cookie
from .sessions import LOGIN_COOKIE, SESSION_COOKIE, Sessions, new_token, same_token
from .viewer import ACCOUNTS, OPEN, Viewer, account_viewer, open_viewer, refusal, ui_mode

PREFIX: Final = "/ui"
#: rows per page unless ``?limit=`` says otherwise (at most MAX_LIMIT)
PAGE_SIZE: Final = 50
MAX_LIMIT: Final = 500
#: a form larger than this is refused
MAX_FORM: Final = 16 * 1024
#: image configs read to show their history and settings (larger ones are not shown)
MAX_CONFIG: Final = 1024 * 1024
#: repositories read per step when filtering a page by what the viewer may pull
SCAN: Final = 1000
CONFIG_TYPES: Final = frozenset({
    "application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json",
})
_STATIC_TYPES: Final = {"css": b"text/css; charset=utf-8", "js": b"text/javascript; charset=utf-8"}


class _LoginNeeded(Exception):
    def __init__(self, back: str) -> None:
        super().__init__(back)
        self.back = back


class _Refused(Exception):
    """The UI is off for this configuration (:func:`~.viewer.refusal` says why)."""


def error_page(error: RegistryError) -> Response:
    """A route's failure as a page, with the status the error table gives it."""
    response = page("error.html", error.status, viewer=None, code=error.code.name, message=error.message)
    for name, value in error.headers.items():
        if name.lower() == "retry-after":
            response.header(name, value)
    return response


def _query(request: RegistryRequest, name: str) -> str:
    value = request.query(name) or ""
    if "\x00" in value:  # no database stores one
        raise RequestUnsupported(f"the query parameter {name} holds a NUL character")
    return value


def _limit(request: RegistryRequest) -> int:
    text = _query(request, "limit")
    if not (text.isascii() and text.isdigit()) or len(text) > 6 or int(text) == 0:
        return PAGE_SIZE
    return min(int(text), MAX_LIMIT)


def _reference(text: str) -> TagRef | DigestRef:
    """A tag or digest to look up; a tag outside the grammar names nothing (DIGEST_INVALID for a bad digest)."""
    reference = parse_reference(text)
    if isinstance(reference, TagRef) and not is_tag(reference.tag):
        raise ManifestUnknown("no such manifest in this repository", detail={"reference": text})
    return reference


def _back(request: RegistryRequest) -> str:
    query = request.scope.get("query_string", b"").decode("latin-1")
    return request.path + (f"?{query}" if query else "")


def _safe_next(target: str | None) -> str:
    """Where to go after logging in: a UI path of this server only (never another site)."""
    if target and target.startswith(f"{PREFIX}/") and "\\" not in target and target.isascii() and target.isprintable():
        return target
    return f"{PREFIX}/repositories"


async def read_form(request: RegistryRequest) -> dict[str, str]:
    raw = await request.body(MAX_FORM)
    if raw is None:
        raise SizeInvalid(f"the form is larger than {MAX_FORM} bytes")
    try:
        fields = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise RequestUnsupported("the form is not UTF-8") from None
    if any("\x00" in name or "\x00" in values[0] for name, values in fields.items()):
        raise RequestUnsupported("the form holds a NUL character")
    return {name: values[0] for name, values in fields.items()}


@dataclass(frozen=True, slots=True)
class PullCommand:
    client: str
    text: str


#: a page group's routes: (name, path pattern, handler per method)
PageTable = list[tuple[str, str, dict[str, Callable[[RegistryRequest], Awaitable[Response]]]]]


class WebUi:
    def __init__(
        self, config: ServerConfig, registry: Registry, store: SqlUiStore, tokens: OwnTokens | None,
        read_only: ReadOnly, admin: AdminApi | None = None,
    ) -> None:
        #: the administration API whose rules the administration pages apply (None: no accounts)
        self.admin = admin
        self.config = config
        self.mode = ui_mode(config)
        self.refusal = refusal(config)
        self.registry = registry
        self.store = store
        self.tokens = tokens
        self.read_only = read_only
        self.secure = config.server.tls.cert is not None
        self.public_url = config.server.public_url
        self.lifetime = int(config.ui.session_lifetime_seconds)
        self.sessions = Sessions(store, tokens.store, config.ui.session_lifetime_seconds) if tokens else None
        folder = resources.files("cargohold.ui") / "static"
        self.static = {name: (folder / name).read_bytes() for name in ("ui.css", "ui.js")}

    def routes(self) -> list[Route]:
        name = r"(?P<name>.+)"
        table: PageTable = [
            ("ui", r"/ui/?", {"GET": self.home}),
            ("ui-static", r"/ui/static/(?P<file>[a-z]+\.(?:css|js))", {"GET": self.static_file}),
            ("ui-login", r"/ui/login", {"GET": self.login_form, "POST": self.login}),
            ("ui-logout", r"/ui/logout", {"POST": self.logout}),
            ("ui-repositories", r"/ui/repositories", {"GET": self.repositories}),
            ("ui-tags", rf"/ui/repositories/{name}/-/tags", {"GET": self.tags}),
            ("ui-manifest", rf"/ui/repositories/{name}/-/manifests/(?P<reference>[^/]+)", {"GET": self.manifest}),
            ("ui-delete", rf"/ui/repositories/{name}/-/delete", {"GET": self.confirm_delete, "POST": self.delete}),
            ("ui-admin", r"/ui/admin/?", {"GET": self.admin_home}),
            *(entry for section in ADMIN_SECTIONS for entry in section(self)),
            ("ui-missing", r"/ui/.*", {"GET": self.missing, "POST": self.missing}),
        ]
        return [
            route(route_name, re.compile(pattern, re.DOTALL),
                  {method: self._endpoint(handler) for method, handler in methods.items()},
                  marker=PREFIX, guarded=False, on_error=error_page)
            for route_name, pattern, methods in table
        ]

    def _endpoint(self, handler: Callable[[RegistryRequest], Awaitable[Response]]) -> Endpoint:
        async def endpoint(request: RegistryRequest) -> Response:
            try:
                return await handler(request)
            except _LoginNeeded as needed:
                return redirect(f"{PREFIX}/login?" + urlencode({"next": needed.back}))
            except _Refused:
                return page("refused.html", 403, viewer=None, reason=self.refusal)

        return endpoint

    # who is looking

    async def _viewer(self, request: RegistryRequest) -> Viewer:
        if self.mode == OPEN:
            return open_viewer()
        if self.sessions is None or self.tokens is None:
            raise _Refused()
        session = await self.sessions.find(cookie(request.headers, SESSION_COOKIE))
        if session is None:
            raise _LoginNeeded(_back(request) if request.method == "GET" else f"{PREFIX}/repositories")
        # the viewer is the actor of what the request changes (the audit log reads it from the grant)
        request.grant = Grant(subject=session.account.name)
        return await account_viewer(self.tokens.store, session.account, session.csrf, self.read_only)

    async def _posted(self, request: RegistryRequest) -> tuple[Viewer, dict[str, str]]:
        """The viewer and the form of a POST whose CSRF token is the session's (else 403)."""
        viewer = await self._viewer(request)
        form = await read_form(request)
        if not viewer.csrf or not same_token(form.get("csrf"), viewer.csrf):
            raise Denied("the form's CSRF token is missing or wrong: reload the page and try again")
        return viewer, form

    async def _administrator(self, request: RegistryRequest) -> Viewer:
        """The viewer of an administration page: a superuser (403 for anyone else)."""
        viewer = await self._viewer(request)
        if not viewer.admin or self.admin is None:
            raise Denied("the administration pages are for superusers")
        return viewer

    async def _readable(self, viewer: Viewer, repository: str) -> None:
        """A repository the viewer may not read answers as one that does not exist."""
        if not viewer.may_pull(repository):
            raise NameUnknown("no such repository", detail={"name": repository})

    # login

    async def home(self, request: RegistryRequest) -> Response:
        return redirect(f"{PREFIX}/repositories")

    async def static_file(self, request: RegistryRequest) -> Response:
        name = request.params["file"]
        body = self.static.get(name)
        if body is None:
            return await self.missing(request)
        content_type = _STATIC_TYPES[name.rsplit(".", 1)[1]]
        return secured(Response(200, [(b"content-type", content_type), (b"cache-control", b"max-age=300")], body))

    async def missing(self, request: RegistryRequest) -> Response:
        return page("error.html", 404, viewer=None, code="NOT_FOUND", message="no such page")

    def _login_page(self, status: int = 200, message: str = "", name: str = "", back: str = "") -> Response:
        token = new_token()
        response = page("login.html", status, viewer=None, csrf=token, message=message, name=name, next=back)
        return set_cookie(response, LOGIN_COOKIE, token, max_age=3600, secure=self.secure)

    async def login_form(self, request: RegistryRequest) -> Response:
        if self.mode == OPEN:
            return redirect(f"{PREFIX}/repositories")
        if self.mode != ACCOUNTS:
            raise _Refused()
        return self._login_page(back=_safe_next(request.query("next")))

    async def login(self, request: RegistryRequest) -> Response:
        if self.mode != ACCOUNTS or self.tokens is None or self.sessions is None:
            raise _Refused()
        form = await read_form(request)
        expected = cookie(request.headers, LOGIN_COOKIE)
        if expected is None or not same_token(form.get("csrf"), expected):
            raise Denied("the login form's CSRF token is missing or wrong: reload the page and try again")
        name, back = form.get("username", ""), _safe_next(form.get("next"))
        try:
            account = await self.tokens.login.login(name, form.get("password", ""), request.client)
        except RegistryError as error:  # wrong credentials, a disabled account, too many attempts
            refused = self._login_page(error.status, error.message, name, back)
            if "Retry-After" in error.headers:
                refused.header("Retry-After", error.headers["Retry-After"])
            return refused
        if account.kind is not AccountKind.USER:
            return self._login_page(403, "robot accounts cannot log in to the web UI", name, back)
        session = await self.sessions.open(account)
        response = set_cookie(redirect(back), SESSION_COOKIE, session.token, max_age=self.lifetime,
                              secure=self.secure)
        return set_cookie(response, LOGIN_COOKIE, "", max_age=0, secure=self.secure)

    async def logout(self, request: RegistryRequest) -> Response:
        await self._posted(request)
        token = cookie(request.headers, SESSION_COOKIE)
        if token is not None and self.sessions is not None:
            await self.sessions.close(token)
        response = redirect(f"{PREFIX}/login")
        return set_cookie(response, SESSION_COOKIE, "", max_age=0, secure=self.secure)

    # administration

    async def admin_home(self, request: RegistryRequest) -> Response:
        return page("admin.html", viewer=await self._administrator(request))

    # repositories

    async def repositories(self, request: RegistryRequest) -> Response:
        viewer = await self._viewer(request)
        search, namespace = _query(request, "q"), _query(request, "namespace").strip("/")
        limit, cursor = _limit(request), _query(request, "after") or None
        kept: list[RepositoryRow] = []
        step = min(SCAN, max(2 * limit, 16))
        while len(kept) <= limit:
            rows = await self.store.repositories(cursor, step, search, namespace)
            kept += [row for row in rows if viewer.may_pull(row.name)]
            if len(rows) < step:
                break
            cursor, step = rows[-1].name, min(SCAN, 2 * step)
        shown = kept[:limit]
        following = shown[-1].name if len(kept) > limit else None
        return page("repositories.html", viewer=viewer, rows=shown, q=search, namespace=namespace, limit=limit,
                    after=following, computed_at=await self.store.usage_computed_at())

    # a repository's tags

    def _pull_commands(self, request: RegistryRequest, repository: str, tag: str) -> list[PullCommand]:
        if self.public_url:
            host, secure = self.public_url.split("://", 1)[-1].rstrip("/"), self.public_url.startswith("https://")
        else:
            host, secure = request.headers.get("host", request.origin.split("://", 1)[1]), self.secure
        image, local = f"{host}/{repository}:{tag}", repository.rsplit("/", 1)[-1]
        return [
            PullCommand("docker", f"docker pull {image}"),
            PullCommand("podman", f"podman pull {'' if secure else '--tls-verify=false '}{image}"),
            PullCommand("skopeo", f"skopeo copy {'' if secure else '--src-tls-verify=false '}docker://{image} "
                                  f"oci:{local}:{tag}"),
        ]

    async def tags(self, request: RegistryRequest) -> Response:
        viewer = await self._viewer(request)
        repository = request.params["name"]
        await self._readable(viewer, repository)
        by_push = request.query("sort") == "pushed"
        search, limit, after_text = _query(request, "q"), _limit(request), _query(request, "after")
        after: tuple[int, str] | str | None = after_text or None
        if by_push and after_text:
            pushed, _, tag = after_text.partition(":")
            # epoch seconds: a BIGINT, and too many digits for int() long before that
            after = (int(pushed), tag) if pushed.isascii() and pushed.isdigit() and len(pushed) <= 15 else None
        rows = await self.store.tags(repository, after, limit + 1, search, by_push)
        if rows is None:
            raise NameUnknown("no such repository", detail={"name": repository})
        shown: list[TagRow] = rows[:limit]
        following = None
        if len(rows) > limit:
            following = f"{shown[-1].pushed_at}:{shown[-1].name}" if by_push else shown[-1].name
        return page(
            "tags.html", viewer=viewer, repository=repository, rows=shown, q=search, sort="pushed" if by_push else "",
            limit=limit, after=following,
            may_delete=await self._may_delete(viewer, repository),
            pulls={row.name: self._pull_commands(request, repository, row.name) for row in shown},
            deleted=_query(request, "deleted"),
        )

    async def _may_delete(self, viewer: Viewer, repository: str) -> bool:
        options = self.registry.options
        return options.delete_enabled and not options.read_only and await viewer.may_delete(repository)

    # a manifest or index

    async def manifest(self, request: RegistryRequest) -> Response:
        viewer = await self._viewer(request)
        repository = request.params["name"]
        await self._readable(viewer, repository)
        reference = _reference(request.params["reference"])
        meta = self.registry.meta
        if isinstance(reference, TagRef):
            record = await meta.tagged_manifest(repository, reference.tag)
        else:
            record = await meta.manifest(repository, str(reference.digest))
        if record is None:
            raise ManifestUnknown("no such manifest in this repository",
                                  detail={"name": repository, "reference": str(reference)})
        try:
            document = json.loads(record.content)
        except ValueError:
            document = {}
        if not isinstance(document, dict):
            document = {}
        repository_id = await meta.repository_id(repository)
        tags = await meta.manifest_tags(repository_id, record.digest) if repository_id is not None else []
        config = document.get("config") if isinstance(document.get("config"), dict) else None
        image_config = await self._image_config(config)
        referrers: list[Descriptor] = await self.registry.referrers(repository, record.digest, None)
        children = [
            {**child, "platform_text": platform_name(child.get("platform"))}
            for child in document.get("manifests", []) if isinstance(child, dict)
        ] if record.media_type in INDEX_TYPES else []
        layers = [layer for layer in document.get("layers", []) if isinstance(layer, dict)]
        return page(
            "manifest.html", viewer=viewer, repository=repository, reference=str(reference), digest=record.digest,
            media_type=record.media_type, size=len(record.content), tags=tags, config=config,
            image_config=image_config, layers=layers, children=children,
            layers_size=sum(layer.get("size", 0) for layer in layers if isinstance(layer.get("size"), int)),
            annotations=_strings(document.get("annotations")), subject=document.get("subject"),
            artifact_type=document.get("artifactType") or "", referrers=referrers,
            may_delete=await self._may_delete(viewer, repository),
            history=[entry for entry in (image_config or {}).get("history", []) if isinstance(entry, dict)],
        )

    async def _image_config(self, config: dict[str, Any] | None) -> dict[str, Any] | None:
        """An image's config document, if it is one, small enough, and readable now."""
        size = config.get("size") if config is not None else None
        if config is None or config.get("mediaType") not in CONFIG_TYPES or not isinstance(size, int) \
                or size > MAX_CONFIG:
            return None
        try:
            digest = parse_digest(str(config.get("digest")))
            chunks = [chunk async for chunk in self.registry.blob_store.read(digest, 0, size)]
            found = json.loads(b"".join(chunks))
        except (RegistryError, OSError, ValueError, *BACKEND_ERRORS):
            return None
        return found if isinstance(found, dict) else None

    # deleting

    def _delete_reference(self, text: str) -> TagRef | DigestRef:
        if not text:
            raise ManifestUnknown("no tag or digest named")
        return _reference(text)

    async def confirm_delete(self, request: RegistryRequest) -> Response:
        viewer = await self._viewer(request)
        repository = request.params["name"]
        await self._readable(viewer, repository)
        reference = self._delete_reference(_query(request, "reference"))
        if not await self._may_delete(viewer, repository):
            raise Denied("you may not delete in this repository")
        tags: list[str] = []
        if isinstance(reference, DigestRef):
            repository_id = await self.registry.meta.repository_id(repository)
            if repository_id is not None:
                tags = await self.registry.meta.manifest_tags(repository_id, str(reference.digest))
        return page("delete.html", viewer=viewer, repository=repository, reference=str(reference),
                    is_tag=isinstance(reference, TagRef), tags=tags)

    async def delete(self, request: RegistryRequest) -> Response:
        viewer, form = await self._posted(request)
        repository = request.params["name"]
        await self._readable(viewer, repository)
        reference = self._delete_reference(form.get("reference", ""))
        if not await self._may_delete(viewer, repository):
            raise Denied("you may not delete in this repository")
        await self.registry.delete_manifest(repository, reference)
        return redirect(f"{PREFIX}/repositories/{repository}/-/tags?" + urlencode({"deleted": str(reference)}))


def _strings(value: Any) -> dict[str, str]:
    """An annotations object as text to show (what is not a JSON object: nothing)."""
    if not isinstance(value, dict):
        return {}
    return {str(key): str(item) for key, item in value.items()}


def admin_caller(viewer: Viewer) -> Caller:
    """An administrator's viewer as the caller the administration API's rules take (its view is loaded)."""
    assert viewer.account is not None and viewer.view is not None  # WebUi._administrator saw to it
    return Caller(viewer.account, viewer.view)


def refusal_page(code: str, message: str) -> Response:
    """A change the administration's rules refuse, as a page with the status the API gives that code."""
    return page("error.html", OTHER_STATUSES.get(code, 400), viewer=None, code=code, message=message)


def refusals_as_pages(
    handler: Callable[[RegistryRequest], Awaitable[Response]],
) -> Callable[[RegistryRequest], Awaitable[Response]]:
    """The handler, whose refusals by the administration API's rules become :func:`refusal_page`."""

    async def answer(request: RegistryRequest) -> Response:
        try:
            return await handler(request)
        except ADMIN_ERRORS as error:
            return refusal_page(error_code(error), str(error))

    return answer


#: the administration pages' groups, each a function of the UI giving its routes (all behind
#: :meth:`WebUi._administrator`), listed on ``admin.html``
ADMIN_SECTIONS: Final[list[Callable[[WebUi], PageTable]]] = []


def ui_routes(
    config: ServerConfig, registry: Registry, tokens: OwnTokens | None, admin: AdminApi | None,
) -> list[Route]:
    """The UI's routes (none when ``ui.enabled`` is off)."""
    if not config.ui.enabled:
        return []
    from . import (
        admin_accounts,  # noqa: F401 - its pages join ADMIN_SECTIONS (pages.py is theirs to import)
        admin_ops,  # noqa: F401 - it adds its pages to ADMIN_SECTIONS (and imports this module)
    )
    read_only = proxied_names(config.proxies) if config.proxies else writable
    return WebUi(config, registry, open_ui_store(config.metadata_url), tokens, read_only, admin).routes()
