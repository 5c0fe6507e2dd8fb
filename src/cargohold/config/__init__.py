"""Server configuration: defaults < YAML file < ``CARGOHOLD_*`` environment < flags.

The configuration is a tree of sections (:class:`Section` subclasses, validated by msgspec); adding a
section is adding a class and a field of :class:`ServerConfig`. A key is written ``section.key`` in
messages and ``section: {key: ...}`` in YAML. The first, flat form of the file (``listen``,
``auth_token_lifetime``, ``tls: {cert, key}``, ...) is still accepted: :data:`FLAT_KEYS` maps each
flat name to its place, and also names its ``CARGOHOLD_*`` variable and its ``serve`` flag.
"""

from .base import DEFAULT_DATA_DIR, DEFAULT_WORKERS, ConfigError, Section
from .loading import FLAT_KEYS, convert, load_config
from .notifications import WEBHOOK_ACTIONS, NotificationsSection, WebhookEndpoint, parse_duration
from .sections import ServerConfig

__all__ = [
    "DEFAULT_DATA_DIR", "DEFAULT_WORKERS", "FLAT_KEYS", "WEBHOOK_ACTIONS", "ConfigError", "NotificationsSection",
    "Section", "ServerConfig", "WebhookEndpoint", "convert", "load_config", "parse_duration",
]
