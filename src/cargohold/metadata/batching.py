"""Concurrent lookups of one kind as one statement, for a database a round trip away (PostgreSQL).

Under a pull storm a worker holds many requests that each ask the same question (the size of a
blob in a repository); answered one statement each, they queue for connections and the database
runs a backend per statement. :class:`Batched` sends at most ``in_flight`` statements at a time:
lookups that arrive meanwhile wait in one pending batch (the same key once), sent as one statement
as soon as a slot frees. An idle worker's lookup goes out at the next turn of the event loop.

A lookup only joins a batch that has not been sent yet, so every answer is read after its request
arrived: a blob unlinked before a HEAD came in is never reported by that HEAD.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any, Final, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: keys per statement: a bounded statement text (each size is prepared once per connection)
MAX_BATCH: Final = 64


class Batched(Generic[K, V]):
    def __init__(self, fetch: Callable[[Sequence[K]], Awaitable[Mapping[K, V]]], *, in_flight: int = 2):
        self._fetch = fetch
        self._in_flight = in_flight
        self._running = 0
        self._pending: dict[K, asyncio.Future[V | None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, key: K) -> V | None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (a CLI command's second asyncio.run): nothing carries over
            self._loop, self._running, self._pending, self._tasks = loop, 0, {}, set()
        future = self._pending.get(key)
        if future is None:
            if len(self._pending) >= MAX_BATCH:
                self._send()  # over the bound: this batch goes now, even past in_flight
            first = not self._pending
            future = self._pending[key] = loop.create_future()
            future.add_done_callback(_retrieve)
            if first and self._running < self._in_flight:
                loop.call_soon(self._send)  # the lookups of this turn of the loop join it
        # a waiter that is cancelled (its client went away) leaves the batch's answer to the others
        return await asyncio.shield(future)

    def _send(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        self._running += 1
        task = asyncio.get_running_loop().create_task(self._answer(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, batch: dict[K, asyncio.Future[V | None]]) -> None:
        try:
            found = await self._fetch(list(batch))
        except Exception as exc:
            for future in batch.values():
                if not future.done():
                    future.set_exception(exc)
        except BaseException:
            for future in batch.values():
                future.cancel()
            raise
        else:
            for key, future in batch.items():
                if not future.done():
                    future.set_result(found.get(key))
        finally:
            self._running -= 1
            if self._pending and self._running < self._in_flight:
                self._send()


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a failure as seen: every waiter of a key may have gone away before it came."""
    if not future.cancelled():
        future.exception()
