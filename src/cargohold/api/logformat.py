"""The server log's format: one JSON object per line, whatever is logged.

The access log and the audit log hand over lines that already are JSON; they
pass through as they are. Any other record becomes one JSON object with its
level, logger, message and ``extra`` fields, and a failure's traceback as the
``traceback`` string: never a bare traceback spread over lines that a log
collector would take for separate entries.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

#: attributes every LogRecord has; anything else on a record came from ``extra``
_STANDARD: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if message.startswith("{") and not record.exc_info and not record.stack_info:
            return message
        entry: dict[str, Any] = {"level": record.levelname.lower(), "logger": record.name, "message": message}
        entry.update((key, value) for key, value in vars(record).items() if key not in _STANDARD)
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=repr)
