"""Webhooks: the endpoints that hear of events, what they are sent, and how.

    endpoints.py  the configured and run-time endpoints, which of them an event goes to (the recorder's targets)
    payload.py    the bodies: Distribution's event envelope, Quay's repo_push
    sender.py     one bounded attempt: POST, timeout, no redirects, a capped read of the answer, the signature
    manage.py     what the admin API and CLI do: add, list, remove, test, deliveries, redeliver

The deliveries themselves are the outbox's rows (:mod:`cargohold.events.outbox`),
written with the event in the change's transaction and posted by the delivery
loop of the periodic jobs (:mod:`cargohold.jobs.deliveries`) in every process.
"""

from .endpoints import Endpoint, Endpoints
from .payload import Links, Source
from .sender import Outcome, Sender

__all__ = ["Endpoint", "Endpoints", "Links", "Outcome", "Sender", "Source"]
