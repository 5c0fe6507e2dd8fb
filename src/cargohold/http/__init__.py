"""The HTTP kernel under the API: request, response, the route table, the one error writer.

Knows ASGI and the error table (:mod:`cargohold.errcodes`), nothing of the
registry, its storage or its access control. Written directly against the ASGI
contract rather than a framework: the hot paths (manifest GET, blob HEAD/GET,
upload PATCH) then do no work beyond parsing what they use, and blob bodies
stream without copies.

    request.py   Request: headers, query and body, parsed when asked for
    response.py  Response: bytes, a stream or a file (pathsend where the server has it)
    errors.py    the one error writer: ``{"errors": [...]}`` with the status from errcodes
    routing.py   Route, Router: the one route table
"""

from .errors import envelope_response, error_response
from .request import ClientDisconnected, Receive, Request, Scope, Send
from .response import Response
from .routing import Route, Router, route

__all__ = [
    "ClientDisconnected", "Receive", "Request", "Response", "Route", "Router", "Scope", "Send",
    "envelope_response", "error_response", "route",
]
