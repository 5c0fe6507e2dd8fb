"""The blob store's operations, timed and their failures counted, whatever the driver (wrapped on the store
built for the server: :mod:`cargohold.instrument`)."""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, TypeVar

from ..instrument import wrap_operations
from ..storage.driver import BlobMissing, BlobStore, UploadBusy, UploadMissing
from .recorder import Metrics

#: the operations timed (``read`` too: until its last chunk)
OPERATIONS: Final = ("check", "stat", "delete", "upload_start", "upload_lock", "upload_writer", "upload_sync",
                     "upload_commit", "upload_delete", "upload_ids")
#: answers, not failures
_EXPECTED: Final = (BlobMissing, UploadMissing, UploadBusy)

T = TypeVar("T")


def time_operations(store: BlobStore, metrics: Metrics) -> BlobStore:
    wrap_operations(store, (*OPERATIONS, "read"), lambda op, call: _timed(call, op, metrics),
                    lambda op, read: _timed_read(read, metrics))
    return store


def _timed(call: Callable[..., Awaitable[T]], op: str, metrics: Metrics) -> Callable[..., Awaitable[T]]:
    labels = (op,)

    @functools.wraps(call)
    async def timed(*args: Any, **kwargs: Any) -> T:
        started = time.perf_counter()
        try:
            return await call(*args, **kwargs)
        except _EXPECTED:
            raise
        except Exception:
            metrics.storage_errors.add(labels)
            raise
        finally:
            metrics.storage_seconds.observe(labels, time.perf_counter() - started)

    return timed


def _timed_read(read: Callable[..., AsyncIterator[bytes]], metrics: Metrics) -> Callable[..., AsyncIterator[bytes]]:
    labels = ("read",)

    @functools.wraps(read)
    async def timed(*args: Any, **kwargs: Any) -> AsyncIterator[bytes]:
        started = time.perf_counter()
        stream = read(*args, **kwargs)
        try:
            async for chunk in stream:
                yield chunk
        except _EXPECTED:
            raise
        except Exception:
            metrics.storage_errors.add(labels)
            raise
        finally:
            metrics.storage_seconds.observe(labels, time.perf_counter() - started)
            close = getattr(stream, "aclose", None)
            if close is not None:  # ended early (the client went away): the driver's file or connection too
                await close()

    return timed
