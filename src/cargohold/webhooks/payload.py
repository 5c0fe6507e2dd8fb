"""What an endpoint is sent: Distribution's event envelope, or Quay's ``repo_push``.

Distribution's fields and their omissions follow its notifications document
(``notifications/event.go``): a delete's target holds only the repository and
the digest (a tag delete: the tag), ``request.id``, ``method`` and
``useragent`` are always there, empty fields are left out elsewhere. An
envelope holds the events waiting for an endpoint, in order, up to its
``batch_size`` (Distribution's document: "the registry may choose to group
unrelated events and send them in the same envelope").
"""

from __future__ import annotations

import datetime
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from ..config import ServerConfig
from ..events.model import Action, Event
from .endpoints import DISTRIBUTION_ACTIONS, pushed_tags, target_media_type

DISTRIBUTION_MEDIA_TYPE: Final = "application/vnd.docker.distribution.events.v1+json"
QUAY_MEDIA_TYPE: Final = "application/json"
_DELETES: Final = (Action.MANIFEST_DELETE, Action.TAG_DELETE, Action.BLOB_DELETE)


@dataclass(frozen=True)
class Links:
    """Where the links in payloads point: ``server.public_url``, else the Host the event's request named."""

    public_url: str = ""
    #: the scheme of a link built from a request's Host (https when the server has TLS)
    scheme: str = "http"

    @classmethod
    def of(cls, config: ServerConfig) -> Links:
        return cls(config.server.public_url, "https" if config.server.tls.cert else "http")

    def base(self, event: Event) -> str | None:
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"{self.scheme}://{event.host}" if event.host else None

    def host(self, event: Event) -> str | None:
        base = self.base(event)
        return None if base is None else base.split("://", 1)[1]


@dataclass(frozen=True)
class Source:
    """Distribution's ``source``: the registry node that sends the event, and this run of it."""

    addr: str = ""
    instance_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @classmethod
    def of(cls, config: ServerConfig) -> Source:
        """This node's host name and port, and a new instance id (each process is an instance)."""
        return cls(f"{socket.gethostname()}:{config.server.port}")


def rfc3339(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


def _content_url(event: Event, links: Links) -> str | None:
    base = links.base(event)
    if base is None or not event.digest:
        return None
    kind = "manifests" if event.action.value.startswith("manifest.") else "blobs"
    return f"{base}/v2/{event.repository}/{kind}/{event.digest}"


def distribution_event(event: Event, links: Links, source: Source) -> dict[str, Any]:
    target: dict[str, Any] = {}
    if event.action in _DELETES:
        if event.action is Action.TAG_DELETE:
            target = {"repository": event.repository, "tag": event.tag}
        else:
            target = {"digest": event.digest, "repository": event.repository}
    else:
        mounted_from = event.detail.get("from") if event.action is Action.BLOB_MOUNT else None
        target = {  # in Distribution's order
            "mediaType": target_media_type(event), "size": event.size, "digest": event.digest,
            "length": event.size, "repository": event.repository,
            "fromRepository": mounted_from if isinstance(mounted_from, str) else None,
            "url": _content_url(event, links), "tag": event.tag,
        }
    request = {"id": event.request_id, "addr": event.address, "host": event.host, "method": event.method,
               "useragent": event.user_agent}
    return {
        "id": event.id,
        "timestamp": rfc3339(event.at),
        "action": DISTRIBUTION_ACTIONS[event.action],
        "target": {k: v for k, v in target.items() if v not in (None, "", 0)},
        "request": {k: v for k, v in request.items() if v or k in ("id", "method", "useragent")},
        "actor": {"name": event.actor} if event.actor else {},
        "source": {k: v for k, v in (("addr", source.addr), ("instanceID", source.instance_id)) if v},
    }


def quay_repo_push(event: Event, links: Links) -> dict[str, Any]:
    namespace, _, name = event.repository.partition("/")
    if not name:  # a repository at the top level
        namespace, name = "", event.repository
    host = links.host(event)
    base = links.base(event)
    return {
        "repository": event.repository,
        "namespace": namespace,
        "name": name,
        "docker_url": f"{host}/{event.repository}" if host else event.repository,
        "homepage": f"{base}/v2/{event.repository}/tags/list" if base else "",
        "updated_tags": pushed_tags(event),
    }


def encoded(format_name: str, event: Event, links: Links, source: Source) -> bytes:
    """``event`` as JSON in an endpoint's format: the body of a Quay notification, one item of Distribution's
    ``events``."""
    if format_name == "quay":
        return msgspec.json.encode(quay_repo_push(event, links))
    return msgspec.json.encode(distribution_event(event, links, source))


def envelope(format_name: str, items: Sequence[bytes]) -> tuple[bytes, str]:
    """The body of events encoded by :func:`encoded` (one, in the quay format), and its content type."""
    if format_name == "quay":
        [item] = items
        return item, QUAY_MEDIA_TYPE
    return b'{"events":[' + b",".join(items) + b"]}", DISTRIBUTION_MEDIA_TYPE


def body(format_name: str, events: Sequence[Event], links: Links, source: Source) -> tuple[bytes, str]:
    """The body of ``events`` (one, in the quay format) in an endpoint's format, and its content type."""
    return envelope(format_name, [encoded(format_name, event, links, source) for event in events])


#: the action of ``webhooks test``'s event in Distribution's envelope: a receiver that acts on pushes ignores it
TEST_ACTION: Final = "test"


def test_body(format_name: str, links: Links, source: Source, now: float) -> tuple[bytes, str]:
    """What ``webhooks test`` sends: in Quay's format its sample ``repo_push`` (as Quay's test notification),
    in Distribution's an envelope of one event of action ``test`` on repository ``test/webhook``."""
    sample = Event(action=Action.MANIFEST_PUSH, repository="test/webhook", tag="latest",
                   detail={"tags": ["latest"]}, actor_kind="admin-cli", at=now)
    if format_name == "quay":
        return body(format_name, [sample], links, source)
    event = distribution_event(sample, links, source)
    event.update(action=TEST_ACTION, target={"repository": sample.repository})
    return msgspec.json.encode({"events": [event]}), DISTRIBUTION_MEDIA_TYPE
