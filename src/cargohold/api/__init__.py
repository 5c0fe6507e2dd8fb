"""The HTTP API: an ASGI application over :class:`cargohold.service.Registry`.

    app.py              dispatch: one route table, authorization, failures as the spec's envelope, logging
    routes.py           the /v2/ and health routes; url_for
    request.py          a request with what the access controller granted (nothing until it answers)
    handlers.py         one function per /v2/ route and method
    health.py           /healthz, /readyz
    token_endpoint.py   /auth/token, /auth/jwks over the token service
    admin_endpoints.py  /admin/v1 over the access store
    server.py           the composition root: stores, service, access control and API from the configuration
"""
