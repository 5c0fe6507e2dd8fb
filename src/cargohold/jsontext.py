"""JSON from the network, decoded with a bound on how deeply it nests.

:func:`json.loads` recurses once per nested array or object, so 8 KB of
``[[[[…`` raise :class:`RecursionError`, which is no :class:`ValueError` and
escapes every caller that handles bad JSON. :func:`loads` measures the depth
first, on the text with its strings taken out, with regular expressions (C
speed, no Python loop over characters), and refuses deep text as a
:class:`ValueError`, like any other malformed JSON.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any, Final

#: deeper than any manifest, token or API body needs (an OCI index entry's platform features: 5)
MAX_DEPTH: Final = 64

_STRING: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET: Final = re.compile(r"[^\[\]{}]+")
_STEP: Final = {"[": 1, "{": 1, "]": -1, "}": -1}


class JSONTooDeep(ValueError):
    """The text nests arrays and objects deeper than allowed."""


def check_depth(text: str, limit: int = MAX_DEPTH) -> None:
    """Raise :class:`JSONTooDeep` if ``text`` nests more than ``limit`` levels.

    Exact for valid JSON; for invalid JSON (an unterminated string) it may
    overcount, which only turns one refusal into another.
    """
    if text.count("[") + text.count("{") <= limit:  # the usual manifest or body: too few to nest that deep
        return
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > limit:
        raise JSONTooDeep(f"nested more than {limit} levels deep")


def loads(text: str | bytes, limit: int = MAX_DEPTH, **options: Any) -> Any:
    """:func:`json.loads` of ``text`` (bytes: UTF-8; ``options`` go to it) after :func:`check_depth`.

    :raises ValueError: not UTF-8, not JSON, or :class:`JSONTooDeep`.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    check_depth(text, limit)
    return json.loads(text, **options)
