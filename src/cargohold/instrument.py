"""Wrapping one object's operations (the blob store's, the database's) for metrics and tracing.

Each operation is replaced on that one object by a wrapper around what is there: the object keeps its
class, so that what code asks of it with ``isinstance`` (a local file server, a sweeper) holds as before,
and a second instrument wraps the first's wrapper (metrics and tracing at once).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

Call = Callable[..., Awaitable[Any]]
Stream = Callable[..., AsyncIterator[Any]]


def wrap_operations(
    target: object, names: Iterable[str], call: Callable[[str, Call], Call], stream: Callable[[str, Stream], Stream],
) -> None:
    """Replace each named coroutine method of ``target`` by ``call(name, method)`` and each async generator
    method by ``stream(name, method)``; names ``target`` lacks are passed over."""
    for name in names:
        method = getattr(target, name, None)
        if method is None:
            continue
        if inspect.isasyncgenfunction(method):
            setattr(target, name, stream(name, method))
        elif inspect.iscoroutinefunction(method):
            setattr(target, name, call(name, method))
