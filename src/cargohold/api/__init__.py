"""The HTTP API: an ASGI application over :class:`cargohold.service.Registry`."""
