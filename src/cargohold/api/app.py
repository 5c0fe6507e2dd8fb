"""The ASGI application: route, call the handler, write errors in the spec's envelope, log.

Pipeline per request: match route → check method → check the repository name
→ handler → send. Every failure becomes the spec's ``{"errors": [...]}`` body
in :meth:`RegistryApp._guarded`: a :class:`RegistryError` as itself, anything
unexpected as ``500 UNKNOWN`` naming the request id (the traceback goes to the
log, never to the client). Every response carries ``X-Request-Id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from ..auth import AccessController, Grant, OpenAccess, required_access
from ..errcodes import BlobUploadInvalid, ManifestInvalid, NameInvalid, RegistryError, Unknown, Unsupported
from ..metadata.store import MetadataError
from ..reference import is_repository_name
from ..service import Registry
from ..storage.driver import StorageError
from .accesslog import AccessLog
from .asgi import ClientDisconnected, Receive, Request, Response, Scope, Send, envelope_response, error_response
from .handlers import HANDLERS
from .routes import PUBLIC, Route, build_routes, match

access_log: Final = logging.getLogger("cargohold.access")
log: Final = logging.getLogger("cargohold.api")

#: a handler for paths outside ``/v2/`` (the token endpoint, the admin API), mounted by path prefix
Endpoint = Callable[[Request], Awaitable[Response]]

#: how often abandoned uploads are looked for
PURGE_INTERVAL_SECONDS: Final = 600.0


class RegistryApp:
    """ASGI entry point; one per worker process."""

    def __init__(
        self, registry: Registry, access: AccessController | None = None,
        endpoints: Mapping[str, Endpoint] | None = None,
    ):
        self.registry = registry
        self.access: AccessController = access or OpenAccess()
        #: path prefix (e.g. "/auth/") -> endpoint; these do their own authentication
        self.endpoints = dict(endpoints or {})
        self.routes = build_routes(HANDLERS)
        self._access_log = AccessLog(access_log)
        self._purger: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        found = match(self.routes, scope["path"])
        request = Request(scope, receive, found[1] if found else {})
        response = await self._respond(request, found)
        response.header("x-request-id", request.id)
        try:
            sent = await response.send(send, scope, request.method == "HEAD")
        except OSError:
            sent = -1
        except Exception:  # the status line may be out: nothing left to answer, only to log
            self._log_failure(request, "sending the response failed")
            sent = -1
        self._log(request, response.status, sent, started)

    async def _respond(self, request: Request, found: tuple[Route, dict[str, str]] | None) -> Response:
        if found is not None:
            return await self._guarded(request, self._dispatch(request, *found))
        endpoint = next((e for prefix, e in self.endpoints.items() if request.path.startswith(prefix)), None)
        if endpoint is not None:
            return await self._guarded(request, endpoint(request))
        return envelope_response(
            [{"code": "NOT_FOUND", "message": "no such API endpoint", "detail": request.path}], 404
        )

    async def _dispatch(self, request: Request, route: Route, params: dict[str, str]) -> Response:
        handler = route.methods.get(request.method)
        if handler is None:
            allowed = ", ".join(sorted(route.methods))
            raise Unsupported(
                f"{request.method} is not supported on {route.name}", status=405, headers={"Allow": allowed}
            )
        name = params.get("name")
        if name is not None and not is_repository_name(name):
            raise NameInvalid(f"invalid repository name {name!r}", detail={"name": name})
        if route.name in PUBLIC:
            request.grant = Grant()
        else:
            request.grant = await self.access.authorize(request, required_access(route.name, request.method, params))
        request.access = self.access
        return await handler(self.registry, request)

    async def _guarded(self, request: Request, work: Awaitable[Response]) -> Response:
        """The one place failures become responses."""
        try:
            return await work
        except RegistryError as error:
            if log.isEnabledFor(logging.DEBUG):  # why a request was refused, for --log-level debug
                log.debug("request refused", extra={
                    "request_id": request.id, "method": request.method, "path": request.path,
                    "errors": error.envelope_entries(),
                })
            await self._drain(request)
            return error_response(error)
        except ClientDisconnected:
            # granian ends a body it cannot decode (bad chunked framing) as a disconnect, which it
            # also is when the client went away: a client still there is told; a gone one hears nothing
            invalid = ManifestInvalid if "reference" in request.params else BlobUploadInvalid
            return error_response(invalid("the request body is malformed or ended early"))
        except Exception as exc:
            what = "backend failure" if isinstance(exc, StorageError | MetadataError | OSError) else "unexpected error"
            self._log_failure(request, what)
            return error_response(Unknown("internal server error", detail={"requestId": request.id}))

    @staticmethod
    def _log_failure(request: Request, message: str) -> None:
        """One log record with the traceback of the exception being handled, naming the request."""
        log.error(message, exc_info=True, extra={
            "request_id": request.id, "method": request.method, "path": request.path,
        })

    @staticmethod
    async def _drain(request: Request) -> None:
        """Read what is left of a rejected request's body so the connection stays usable."""
        with contextlib.suppress(ClientDisconnected):
            async for _ in request.stream():
                pass

    def _log(self, request: Request, status: int, sent: int, started: float) -> None:
        self._access_log.record(
            request.method, request.path, status, sent, time.perf_counter() - started, request.client, request.id
        )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._purger = asyncio.create_task(self._purge_loop())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._purger is not None:
                    self._purger.cancel()
                await self.registry.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _purge_loop(self) -> None:
        max_age = self.registry.options.upload_max_age_seconds
        while True:
            try:
                removed = await self.registry.uploads.purge(max_age)
                if removed:
                    log.info("purged abandoned uploads", extra={"count": removed})
            except (StorageError, MetadataError):
                log.exception("upload purge failed")
            await asyncio.sleep(min(PURGE_INTERVAL_SECONDS, max_age))
