"""The webhook endpoints: the configuration's (read-only) and those added at run time, and which hear of an event."""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import msgspec

from ..config import WEBHOOK_ACTIONS, ConfigError, WebhookEndpoint, convert
from ..events.log import EventLog
from ..events.model import Action, Event
from ..events.outbox import RuntimeEndpoints

log: Final = logging.getLogger("cargohold.webhooks")

#: cargohold's action -> Distribution's word for it; an action not here is never sent
DISTRIBUTION_ACTIONS: Final = {own: word for word, owns in WEBHOOK_ACTIONS.items() for own in owns}
#: how stale the endpoints may be for a read (a pull): an endpoint added hears of pulls within this
READS_REFRESH_SECONDS: Final = 1.0
#: the media type Distribution gives a blob's events (its blob descriptors say no more)
BLOB_MEDIA_TYPE: Final = "application/octet-stream"


def target_media_type(event: Event) -> str | None:
    """The ``target.mediaType`` an event is sent with (and filtered on)."""
    if event.media_type:
        return event.media_type
    return BLOB_MEDIA_TYPE if event.action in (Action.BLOB_PUSH, Action.BLOB_PULL, Action.BLOB_MOUNT) else None


def pushed_tags(event: Event) -> list[str]:
    """The tags a manifest push set (its ``detail``, else its one ``tag``)."""
    tags = event.detail.get("tags")
    if isinstance(tags, list) and all(isinstance(tag, str) for tag in tags):
        return list(tags)
    return [event.tag] if event.tag else []


def _expand(words: Sequence[str]) -> frozenset[str]:
    return frozenset(own for word in words for own in WEBHOOK_ACTIONS.get(word, (word,)))


@dataclass(frozen=True)
class Endpoint:
    settings: WebhookEndpoint
    #: ``config`` (read-only at run time) or ``runtime``
    source: str
    _actions: frozenset[str] = field(init=False, repr=False)
    _media_types: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        s = self.settings
        object.__setattr__(self, "_actions", _expand(s.actions) - _expand(s.ignore.actions))
        object.__setattr__(self, "_media_types", frozenset([*s.ignoredmediatypes, *s.ignore.mediatypes]))

    @property
    def name(self) -> str:
        return self.settings.name

    def wants(self, event: Event) -> bool:
        s = self.settings
        if s.disabled or event.action not in self._actions:
            return False
        if s.format == "quay" and not (event.action is Action.MANIFEST_PUSH and pushed_tags(event)):
            return False
        media_type = target_media_type(event)
        if media_type is not None and media_type in self._media_types:
            return False
        return not s.repositories or any(fnmatch.fnmatchcase(event.repository, p) for p in s.repositories)


def endpoint_json(settings: WebhookEndpoint) -> str:
    return msgspec.json.encode(settings).decode()


def parse_endpoint(data: object, prefix: str = "") -> WebhookEndpoint:
    """Settings from a JSON object (a request body, a stored row); :class:`ConfigError` names a bad key."""
    if not isinstance(data, dict):
        raise ConfigError("a webhook endpoint must be a JSON object")
    settings = convert(data, WebhookEndpoint, prefix=prefix)
    settings.check(prefix)
    return settings


class Endpoints:
    """Every endpoint an event may go to: the configuration's, then the run-time ones (read at each call).

    A run-time endpoint is read from the database every time, so an endpoint added in any process hears
    of the next event in all of them. Called as the recorder's targets, inside the change's transaction.
    """

    def __init__(self, configured: Sequence[WebhookEndpoint], runtime: RuntimeEndpoints | None) -> None:
        self.configured = {s.name: Endpoint(s, "config") for s in configured}
        self.runtime = runtime
        self._parsed: dict[tuple[str, str], Endpoint | None] = {}
        #: called when an event got deliveries (the local deliverer wakes up rather than waiting for its poll)
        self.on_deliveries: Callable[[], None] | None = None
        self._reads_cache: tuple[float, dict[str, Endpoint]] | None = None

    async def all(self) -> dict[str, Endpoint]:
        found = dict(self.configured)
        if self.runtime is None:
            return found
        for name, text in await self.runtime.webhook_endpoints():
            endpoint = self._parse(name, text)
            if endpoint is not None and name not in found:
                found[name] = endpoint
        return found

    def _parse(self, name: str, text: str) -> Endpoint | None:
        key = (name, text)
        if key not in self._parsed:
            if len(self._parsed) > 1000:
                self._parsed.clear()
            endpoint: Endpoint | None = None
            if name in self.configured:
                log.warning("a run-time webhook endpoint has a configured endpoint's name; the configured one is"
                            " used", extra={"endpoint": name})
            else:
                try:
                    endpoint = Endpoint(parse_endpoint(msgspec.json.decode(text)), "runtime")
                except (ConfigError, msgspec.DecodeError):
                    log.exception("a stored webhook endpoint is unreadable", extra={"endpoint": name})
            self._parsed[key] = endpoint
        return self._parsed[key]

    async def _for_reads(self) -> dict[str, Endpoint]:
        """:meth:`all`, read again at most every :data:`READS_REFRESH_SECONDS`: reads come in batches of a
        second's worth (thousands), and wait that long anyway."""
        now = time.monotonic()
        if self._reads_cache is None or now - self._reads_cache[0] > READS_REFRESH_SECONDS:
            self._reads_cache = (now, await self.all())
        return self._reads_cache[1]

    async def __call__(self, tx: EventLog, event: Event) -> Sequence[str]:
        """The recorder's targets: the names of the endpoints that must hear of ``event``."""
        if event.action not in DISTRIBUTION_ACTIONS:
            return ()
        endpoints = await (self._for_reads() if event.action.is_read else self.all())
        names = [endpoint.name for endpoint in endpoints.values() if endpoint.wants(event)]
        if names and self.on_deliveries is not None:
            # runs after this task yields, which is after the transaction has ended
            asyncio.get_running_loop().call_soon(self.on_deliveries)
        return names
