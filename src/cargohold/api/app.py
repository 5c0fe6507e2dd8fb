"""The ASGI application: route, authorize, call the handler, write errors in the spec's envelope, log.

Pipeline per request: match route → check method → check the repository name
→ authorize → handler → send. One route table holds ``/v2/``, the health
checks and, with token auth, the token and admin endpoints. Every failure
becomes the spec's ``{"errors": [...]}`` body in :meth:`RegistryApp._respond`:
a :class:`RegistryError` as its route writes it, anything unexpected as ``500
UNKNOWN`` naming the request id (the traceback goes to the log, never to the
client). Every response carries ``X-Request-Id``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final

from ..auth import AccessController, OpenAccess, required_access
from ..errcodes import BlobUploadInvalid, ManifestInvalid, NameInvalid, RegistryError, Unknown
from ..events.origin import set_origin
from ..events.recorder import Recorder
from ..http import ClientDisconnected, Receive, Request, Response, Router, Scope, Send, error_response
from ..http.errors import method_not_allowed, not_found
from ..jobs import Activity, JobRunner
from ..metrics.requests import NO_ROUTE
from ..reference import is_repository_name
from ..service import BACKEND_ERRORS, RegistryService
from ..service.pulls import PullTimes
from .accesslog import AccessLog
from .handlers import HANDLERS
from .request import RegistryRequest
from .routes import Endpoint, Route, build_routes

if TYPE_CHECKING:
    from ..metrics.recorder import Metrics

access_log: Final = logging.getLogger("cargohold.access")
log: Final = logging.getLogger("cargohold.api")


class RegistryApp:
    """ASGI entry point; one per worker process."""

    def __init__(
        self,
        registry: RegistryService,
        access: AccessController | None = None,
        routes: Iterable[Route] = (),
        jobs: JobRunner | None = None,
        recorder: Recorder | None = None,
        activity: Activity | None = None,
        pulls: PullTimes | None = None,
        local_name: Callable[[str, bytes], str] | None = None,
        metrics: Metrics | None = None,
    ):
        self.registry = registry
        #: a request's repository name (and query) -> the name it is stored under, before access control
        #: (a pull-through cache's ``?ns=`` and default namespace); None: names are taken as they come
        self.local_name = local_name
        self.access: AccessController = access or OpenAccess()
        #: /v2/ and the health checks, then ``routes`` (the token and admin endpoints)
        self.router: Router[Endpoint] = Router([*build_routes(HANDLERS, registry), *routes])
        self._access_log = AccessLog(access_log)
        #: the periodic work (the upload purge), started with the worker
        self.jobs = jobs
        #: whether the worker finished starting (its lifespan startup is complete) and may hold requests
        self.serving = False
        #: writes the batched reads (pulls) every second, and what it holds at shutdown
        self.recorder = recorder
        #: requests in flight (the webhook deliveries wait for a quiet moment)
        self.activity = activity or Activity()
        #: writes the manifests' pull times every few seconds, and what it holds at shutdown
        self.pulls = pulls
        #: requests counted by route template and status; None: metrics are off
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        self.activity.started()
        metrics = self.metrics
        uploading = False
        try:
            found = self.router.match(scope["path"])
            request = RegistryRequest(scope, receive, found[1] if found else {}, self.access)
            if metrics is not None and found is not None:
                uploading = metrics.uploading(found[0].name, request.method)
            response = await self._respond(request, found[0]) if found else not_found(request.path)
            response.header("x-request-id", request.id)
            try:
                sent = await response.send(send, scope, request.method == "HEAD")
            except OSError:
                sent = -1
            except Exception:  # the status line may be out: nothing left to answer, only to log
                self._log_failure(request, "sending the response failed")
                sent = -1
        finally:
            self.activity.ended()
            if uploading:
                metrics.upload_ended()  # type: ignore[union-attr]
        elapsed = time.perf_counter() - started
        if metrics is not None:
            metrics.requests.add(request.method, found[0].template if found else NO_ROUTE, response.status,
                                 request.received, max(sent, 0), elapsed)
        self._log(request, response.status, sent, elapsed)

    async def _dispatch(self, request: RegistryRequest, route: Route) -> Response:
        handler = route.methods.get(request.method)
        if handler is None:
            raise method_not_allowed(request.method, route.name, route.methods)
        name = request.params.get("name")
        if name is not None and self.local_name is not None:
            name = request.params["name"] = self.local_name(name, request.scope.get("query_string", b""))
        if name is not None and not is_repository_name(name):
            raise NameInvalid(f"invalid repository name {name!r}", detail={"name": name})
        # the request is the origin of every event it makes (its caller is read from the grant when
        # one is made: a login refused during authorization is recorded with the request's address)
        set_origin(request)
        if route.guarded:
            required = required_access(route.name, request.method, request.params)
            request.grant = await self.access.authorize(request, required)
        return await handler(request)

    async def _respond(self, request: RegistryRequest, route: Route) -> Response:
        """The one place failures become responses."""
        try:
            return await self._dispatch(request, route)
        except RegistryError as error:
            if log.isEnabledFor(logging.DEBUG):  # why a request was refused, for --log-level debug
                log.debug("request refused", extra={
                    "request_id": request.id, "method": request.method, "path": request.path,
                    "errors": error.envelope_entries(),
                })
            await self._drain(request)
            return route.on_error(error)
        except ClientDisconnected:
            # granian ends a body it cannot decode (bad chunked framing) as a disconnect, which it
            # also is when the client went away: a client still there is told; a gone one hears nothing
            invalid = ManifestInvalid if "reference" in request.params else BlobUploadInvalid
            return error_response(invalid("the request body is malformed or ended early"))
        except Exception as exc:
            what = "backend failure" if isinstance(exc, (*BACKEND_ERRORS, OSError)) else "unexpected error"
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

    def _log(self, request: Request, status: int, sent: int, elapsed: float) -> None:
        self._access_log.record(request.method, request.path, status, sent, elapsed, request.client, request.id)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.jobs is not None:
                    self.jobs.start()
                if self.recorder is not None:
                    self.recorder.start()
                if self.pulls is not None:
                    self.pulls.start()
                if self.metrics is not None:
                    self.metrics.batches.start()
                self.serving = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.jobs is not None:
                    await self.jobs.stop()
                if self.recorder is not None:
                    await self.recorder.stop()
                if self.pulls is not None:
                    await self.pulls.stop()
                if self.metrics is not None:
                    await self.metrics.batches.stop()
                await self.registry.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
