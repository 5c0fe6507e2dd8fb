"""A bounded memo: values computed once per key, for values that never change once made."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Memo(Generic[K, V]):
    """The values of the most recent ``size`` keys; the oldest key is forgotten first."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._values: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self._values.get(key)

    def put(self, key: K, value: V) -> V:
        if key not in self._values and len(self._values) >= self.size:
            del self._values[next(iter(self._values))]
        self._values[key] = value
        return value

    def make(self, key: K, make: Callable[[], V]) -> V:
        """The value of ``key``, made now if it is not known."""
        value = self._values.get(key)
        return self.put(key, make()) if value is None else value
