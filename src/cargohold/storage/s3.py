"""Blobs in an S3-compatible bucket (boto3's blocking client, run in worker threads).

Every piece of an upload's state lives in the metadata database (:class:`StoreState`), so any
replica can continue or finish an upload another began, without local files and without
listing the bucket:

- An upload is one S3 multipart upload under a key of its own, ``blobs/<upload id>``, begun when
  its first full part is written. Part numbers follow from byte offsets (part ``n`` holds bytes
  ``(n-1)·part_size`` to ``n·part_size``), so a retried request rewrites the same parts; each
  part's ETag and size are recorded as it is uploaded.
- The bytes past the last full part (fewer than ``part_size``) are a small object,
  ``uploads/<upload id>/tail-<size>``, named by the upload size it completes: a request that
  dies before its size is recorded leaves the earlier tail in place for the retry. (In the
  database they would be up to ``part_size`` bytes per request in a row and in the WAL.)
- The commit uploads the tail as the last part and completes the multipart upload where it is
  (no copy), then records digest -> key; when two uploads of one blob race, the first key
  recorded stands and the other object is deleted. A blob smaller than one part is one PUT.
- Nothing is left that nothing will delete: a crash can leave a multipart upload begun but not
  recorded, or a completed object whose claim lost (the same blob pushed twice at once) or whose
  blob was deleted; :meth:`S3BlobStore.sweep` (a periodic job) aborts and deletes what no upload
  row or blob row names once it is ``orphan_grace_seconds`` old. A blob's row is deleted before its
  object, so no row ever names a missing object.

Each call is retried by boto3 (its ``standard`` mode: exponential backoff with jitter, up to
``max_attempts`` attempts in all) on throttling (``SlowDown``, 503), the store's own failures (500,
502, 504) and dropped or timed-out connections; each connect and each read waits at most
``timeout_seconds``. Once the attempts are spent, throttling answers TOOMANYREQUESTS and the rest
UNAVAILABLE, so no request waits on the store for longer than about
``max_attempts x timeout_seconds`` plus the backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final, Protocol, TypeVar
from uuid import uuid4

from ..digest import Digest
from ..errcodes import SizeInvalid, TooManyRequests, Unavailable
from ..faults import crash_point
from ..metadata.store import StorePart, StoreState, StoreUpload
from .driver import DURABLE, BlobCorrupt, StorageError, UploadBusy, UploadMissing, Written, check_upload_id

log: Final = logging.getLogger("cargohold.storage")

#: S3's most parts in one multipart upload
MAX_PARTS: Final = 10_000
#: how long an upload's lock outlives its last sign of life; a holder that died (a killed replica)
#: blocks the upload this long, so a live one renews it every LOCK_RENEW_SECONDS while its request lasts
LOCK_SECONDS: Final = 10.0
LOCK_RENEW_SECONDS: Final = 3.0
#: parts of one request on their way to S3 while the next is received (each holds part_size bytes)
PARTS_IN_FLIGHT: Final = 2
_READ_CHUNK: Final = 1024 * 1024
#: how often the sweep runs at most (more often with a shorter grace)
SWEEP_INTERVAL_SECONDS: Final = 3600.0
#: how long the readiness check waits for the bucket (one attempt, whatever ``timeout_seconds`` is)
CHECK_TIMEOUT_SECONDS: Final = 1.0
#: error codes of a store that asks its clients to slow down (with the HTTP statuses 429 and 503)
_THROTTLED: Final = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests",
    "TooManyRequestsException", "RequestThrottled", "ServiceUnavailable", "BandwidthLimitExceeded",
})

#: the answers to a multipart upload that is gone (completed or aborted): Swift's S3 API says NoSuchKey
_NO_UPLOAD: Final = frozenset({"NoSuchUpload", "NoSuchKey", "404"})

T = TypeVar("T")


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _status(exc: Exception) -> int:
    response = getattr(exc, "response", None)
    metadata = response.get("ResponseMetadata", {}) if isinstance(response, dict) else {}
    return int(metadata.get("HTTPStatusCode") or 0)


def _throttled(exc: Exception) -> bool:
    return _code(exc) in _THROTTLED or _status(exc) in (429, 503)


class UploadState(StoreState, Protocol):
    """The metadata database as the store uses it: its upload records, and leases as upload locks."""

    async def acquire_lease(self, name: str, holder: str, seconds: float) -> bool: ...
    async def release_lease(self, name: str, holder: str) -> None: ...


def _lock_name(upload_id: str) -> str:
    return f"upload:{upload_id}"


class _Lock:
    """An upload's lock: a lease in the database, so that a request on another replica sees it too.

    It is given up before the response goes out (the client may send its next request to another
    replica at once), in a task of its own that a cancelled request does not stop.
    """

    def __init__(self, store: S3BlobStore, upload_id: str, holder: str) -> None:
        self._store, self._id, self._holder = store, upload_id, holder
        self._renewer = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        """Keep the lock while the request lives (a slow client may send no part for a long time)."""
        while True:
            await asyncio.sleep(LOCK_RENEW_SECONDS)
            try:
                if not await self._store._state.acquire_lease(_lock_name(self._id), self._holder, LOCK_SECONDS):
                    return  # lost: the writer finds out before it records a part
            except Exception:
                log.warning("renewing an upload's lock failed", exc_info=True, extra={"upload": self._id})

    async def release(self) -> None:
        self._renewer.cancel()
        store = self._store
        if store._holders.get(self._id) == self._holder:
            del store._holders[self._id]
        task = asyncio.get_running_loop().create_task(store._state.release_lease(_lock_name(self._id), self._holder))
        store._releasing[self._id] = task
        task.add_done_callback(lambda done: store._releasing.pop(self._id, None) if
                               store._releasing.get(self._id) is done else None)
        try:
            await asyncio.shield(task)
        except Exception:  # the lease lapses by itself
            log.warning("releasing an upload's lock failed", exc_info=True, extra={"upload": self._id})


class S3BlobStore:
    name = "s3"

    def __init__(self, options: Mapping[str, Any], state: UploadState) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = str(options["bucket"])
        self.prefix = str(options.get("prefix", ""))
        self.part_size = int(options.get("part_size", 16 * 1024 * 1024))
        self.redirect = bool(options.get("redirect", True))
        self.redirect_expiry = int(options.get("redirect_expiry_seconds", 1200))
        #: how old an object or multipart upload that nothing names must be for the sweep to remove it
        self.orphan_grace = float(options.get("orphan_grace_seconds", 24 * 3600))
        self.sweep_interval = min(SWEEP_INTERVAL_SECONDS, max(1.0, self.orphan_grace))
        timeout = float(options.get("timeout_seconds", 30.0))
        attempts = int(options.get("max_attempts", 5))
        self._state = state
        #: upload id -> the holder of its lock in this process; the releases under way
        self._holders: dict[str, str] = {}
        self._releasing: dict[str, asyncio.Task[None]] = {}
        self._parts = ThreadPoolExecutor(max_workers=16, thread_name_prefix="s3-parts")
        where = {
            "endpoint_url": options.get("endpoint") or None,
            "region_name": options.get("region") or None,
            "aws_access_key_id": options.get("access_key_id") or None,
            "aws_secret_access_key": options.get("secret_access_key") or None,
        }
        config = Config(s3={"addressing_style": "path"}, signature_version="s3v4", max_pool_connections=32,
                        connect_timeout=timeout, read_timeout=timeout,
                        retries={"mode": "standard", "total_max_attempts": attempts})
        self._client: Any = boto3.client("s3", **where, config=config)
        check = min(timeout, CHECK_TIMEOUT_SECONDS)
        #: for the readiness check: one attempt, a short wait
        self._probe: Any = boto3.client("s3", **where, config=config.merge(Config(
            connect_timeout=check, read_timeout=check, retries={"mode": "standard", "total_max_attempts": 1})))

    @property
    def max_size(self) -> int:
        """The largest blob: part_size x 10,000 parts (16 MiB parts: 156.25 GiB)."""
        return self.part_size * MAX_PARTS

    @property
    def min_chunk(self) -> int:
        """Chunks smaller than this cost a rewrite of the upload's tail (``OCI-Chunk-Min-Length``)."""
        return self.part_size

    # keys and calls

    def _blob_key(self, upload_id: str) -> str:
        return f"{self.prefix}blobs/{upload_id}"

    def _tail_key(self, upload_id: str, size: int) -> str:
        return f"{self.prefix}uploads/{upload_id}/tail-{size}"

    async def _call(self, what: str, method: str, **params: Any) -> Any:
        return await asyncio.to_thread(self._sync, what, method, **params)

    def _sync(self, what: str, method: str, **params: Any) -> Any:
        """One call, retried by boto3; raises TooManyRequests or Unavailable once its attempts are spent,
        the ClientError of any other answer."""
        from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        try:
            return getattr(self._client, method)(Bucket=self.bucket, **params)
        except ClientError as exc:
            if _throttled(exc):
                log.warning("the s3 store throttles", extra={"bucket": self.bucket, "object": what, "error": str(exc)})
                raise TooManyRequests("the blob store is busy: try again later",
                                      headers={"Retry-After": "1"}) from exc
            if _status(exc) >= 500:
                log.warning("the s3 store fails", extra={"bucket": self.bucket, "object": what, "error": str(exc)})
                raise Unavailable("the blob store keeps failing: try again later") from exc
            raise
        except (BotoConnectionError, HTTPClientError) as exc:  # refused, reset, timed out
            log.warning("the s3 store does not answer",
                        extra={"bucket": self.bucket, "object": what, "error": str(exc)})
            raise Unavailable("the blob store does not answer: try again later") from exc
        except BotoCoreError as exc:
            raise StorageError(f"s3 bucket {self.bucket}: {what}: {exc}") from exc

    def _failed(self, what: str, exc: Exception) -> StorageError:
        return StorageError(f"s3 bucket {self.bucket}: {what}: {exc}")

    # blobs

    async def check(self, writable: bool) -> None:
        """One HEAD of the bucket, bounded by CHECK_TIMEOUT_SECONDS; a store that throttles is up."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            await asyncio.to_thread(self._probe.head_bucket, Bucket=self.bucket)
        except ClientError as exc:
            if not _throttled(exc):
                raise self._failed("check", exc) from exc
        except BotoCoreError as exc:
            raise self._failed("check", exc) from exc

    async def stat(self, digest: Digest) -> int | None:
        from botocore.exceptions import ClientError

        key = await self._state.store_blob_key(str(digest))
        if key is None:
            return None
        try:
            head = await self._call(key, "head_object", Key=key)
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._failed(key, exc) from exc
        return int(head["ContentLength"])

    async def read(self, digest: Digest, start: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        from botocore.exceptions import ClientError

        from .driver import BlobMissing

        key = await self._state.store_blob_key(str(digest))
        if key is None:
            raise BlobMissing(f"s3 bucket {self.bucket}: no blob {digest}")
        if length == 0:
            return
        span = f"bytes={start}-" + ("" if length is None else str(start + length - 1))
        try:
            response = await self._call(key, "get_object", Key=key, Range=span)
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey"):
                raise BlobMissing(f"s3 bucket {self.bucket}: no blob {digest}") from exc
            if _code(exc) == "InvalidRange":  # from the end: nothing
                return
            raise self._failed(key, exc) from exc
        body = response["Body"]
        try:
            while chunk := await asyncio.to_thread(body.read, _READ_CHUNK):
                yield chunk
        finally:
            body.close()

    async def delete(self, digest: Digest) -> bool:
        key = await self._state.store_blob_key(str(digest))
        if key is None:
            return False
        # the row first: a crash between the two leaves an object nothing names, which the sweep removes
        await self._state.delete_store_blob_key(str(digest))
        await self._delete_object(key)
        return True

    async def delete_key(self, key: str) -> None:
        await self._delete_object(key)

    async def _delete_object(self, key: str) -> None:
        from botocore.exceptions import ClientError

        try:
            await self._call(key, "delete_object", Key=key)
        except ClientError as exc:
            if _code(exc) not in ("404", "NoSuchKey"):
                raise self._failed(key, exc) from exc

    async def redirect_url(self, digest: Digest) -> str | None:
        if not self.redirect:
            return None
        key = await self._state.store_blob_key(str(digest))
        if key is None:
            return None
        url: str = self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.redirect_expiry)
        return url

    # uploads

    async def upload_start(self, upload_id: str) -> None:
        check_upload_id(self.name, upload_id)
        await self._state.save_store_upload(upload_id, "", 0)  # the multipart upload begins with a full part

    async def _upload(self, upload_id: str) -> StoreUpload:
        check_upload_id(self.name, upload_id)
        state = await self._state.store_upload(upload_id)
        if state is None:
            raise UploadMissing(f"s3 bucket {self.bucket}: no upload {upload_id}")
        return state

    async def upload_lock(self, upload_id: str) -> _Lock:
        await self._upload(upload_id)
        releasing = self._releasing.get(upload_id)
        if releasing is not None:  # this process's last request on it is giving it up
            await releasing
        holder = uuid4().hex
        if not await self._state.acquire_lease(_lock_name(upload_id), holder, LOCK_SECONDS):
            raise UploadBusy(f"s3 bucket {self.bucket}: upload {upload_id} is busy")
        self._holders[upload_id] = holder
        return _Lock(self, upload_id, holder)

    async def _still_locked(self, upload_id: str, holder: str | None) -> None:
        """Renew the lock a writer's request holds; raise UploadBusy if it was lost (it expired, and
        another request took it): the writer must not record parts then."""
        if holder is not None and not await self._state.acquire_lease(_lock_name(upload_id), holder, LOCK_SECONDS):
            raise UploadBusy(f"s3 bucket {self.bucket}: upload {upload_id} lost its lock to another request")

    def _parts_before(self, state: StoreUpload, upload_id: str, count: int) -> list[StorePart]:
        parts = {part.number: part for part in state.parts}
        chosen = [parts.get(number) for number in range(1, count + 1)]
        if any(part is None or part.size != self.part_size for part in chosen):
            raise UploadMissing(f"s3 bucket {self.bucket}: upload {upload_id} is missing parts")
        return [part for part in chosen if part is not None]

    async def _tail(self, upload_id: str, size: int, recorded: int | None = None) -> bytes:
        """The upload's bytes past its last full part at ``size``: the tail object written at that size,
        or the start of a later one in the same part (``recorded``: bytes past ``size`` to discard)."""
        from botocore.exceptions import ClientError

        length = size % self.part_size
        if length == 0:
            return b""
        sizes = [size]
        if recorded is not None and recorded != size and recorded // self.part_size == size // self.part_size:
            sizes.append(recorded)
        data = b""
        for candidate in sizes:
            key = self._tail_key(upload_id, candidate)
            try:
                response = await self._call(key, "get_object", Key=key, Range=f"bytes=0-{length - 1}")
                data = await asyncio.to_thread(response["Body"].read)
                break
            except ClientError as exc:
                if _code(exc) not in ("404", "NoSuchKey"):
                    raise self._failed(key, exc) from exc
        if len(data) != length:
            raise UploadMissing(f"s3 bucket {self.bucket}: upload {upload_id} lost its last {length} bytes")
        return data

    async def upload_writer(self, upload_id: str, offset: int) -> _Writer:
        state = await self._upload(upload_id)
        if state.size < offset:
            raise UploadMissing(f"s3 bucket {self.bucket}: upload {upload_id} has {state.size} bytes, not {offset}")
        self._parts_before(state, upload_id, offset // self.part_size)
        tail = await self._tail(upload_id, offset, state.size)
        return _Writer(self, upload_id, state.session, offset, tail, asyncio.get_running_loop(),
                       self._holders.get(upload_id))

    def state_trusted(self, token: str) -> bool:
        return token == DURABLE

    async def upload_sync(self, upload_id: str) -> None:
        await self._upload(upload_id)  # S3 acknowledges a part once it is stored

    async def upload_commit(self, upload_id: str, digest: Digest) -> None:
        from botocore.exceptions import ClientError

        if await self._state.store_blob_key(str(digest)) is not None:
            await self.upload_delete(upload_id)  # placed already (by this upload before a crash, or another)
            return
        state = await self._upload(upload_id)
        key = self._blob_key(upload_id)
        full = state.size // self.part_size
        try:
            if full == 0:
                tail = await self._tail(upload_id, state.size)
                await self._call(key, "put_object", Key=key, Body=tail)
            else:
                parts = self._parts_before(state, upload_id, full)
                if state.size % self.part_size:
                    tail = await self._tail(upload_id, state.size)
                    answer = await self._call(key, "upload_part", Key=key, UploadId=state.session,
                                              PartNumber=full + 1, Body=tail)
                    parts.append(StorePart(full + 1, str(answer["ETag"]), len(tail)))
                await self._call(key, "complete_multipart_upload", Key=key, UploadId=state.session,
                                 MultipartUpload={"Parts": [{"PartNumber": p.number, "ETag": p.etag} for p in parts]})
        except ClientError as exc:
            # completed before a crash: the multipart upload is gone and its object is there
            if _code(exc) not in _NO_UPLOAD or not await self._exists(key):
                raise self._failed(f"commit {upload_id}", exc) from exc
        crash_point("s3-completed")
        standing = await self._state.claim_store_blob_key(str(digest), key)
        crash_point("s3-claimed")
        if standing != key:  # the same blob pushed twice at once: the first recorded stands
            await self._delete_object(key)
        await self._drop(upload_id, state if full == 0 else None)  # a completed multipart upload is gone

    async def import_file(self, digest: Digest, path: str) -> bool:
        """Copy a local file that holds blob ``digest`` into the bucket and record it, as a commit does:
        False if the blob is recorded already. The bytes are hashed as they are sent, one part in
        memory at a time; ones that do not hash to ``digest`` raise :class:`BlobCorrupt` and are not
        recorded. A copy cut short leaves an object or multipart upload that nothing names, which the
        sweep removes."""
        if await self._state.store_blob_key(str(digest)) is not None:
            return False
        key = self._blob_key(f"import-{uuid4().hex}")
        await asyncio.to_thread(self._put_file, digest, path, key)
        standing = await self._state.claim_store_blob_key(str(digest), key)
        if standing != key:  # recorded meanwhile (pushed, or another copy)
            await self._delete_object(key)
        return True

    def _put_file(self, digest: Digest, path: str, key: str) -> None:
        import hashlib

        from botocore.exceptions import ClientError

        hasher = hashlib.new(digest.algorithm)
        session = ""
        parts: list[dict[str, Any]] = []
        try:
            with open(path, "rb") as file:
                while True:
                    body = file.read(self.part_size)
                    hasher.update(body)
                    if not parts and not session and len(body) < self.part_size:  # the whole blob: one PUT
                        if hasher.hexdigest() != digest.hex:
                            raise BlobCorrupt(f"{path}: its bytes do not hash to {digest}")
                        self._sync(key, "put_object", Key=key, Body=body)
                        return
                    if not body:
                        break
                    if not session:
                        session = str(self._sync(key, "create_multipart_upload", Key=key)["UploadId"])
                    number = len(parts) + 1
                    if number > MAX_PARTS:
                        raise SizeInvalid(f"{path}: larger than storage.s3.part_size {self.part_size} x {MAX_PARTS}")
                    answer = self._sync(key, "upload_part", Key=key, UploadId=session, PartNumber=number, Body=body)
                    parts.append({"PartNumber": number, "ETag": answer["ETag"]})
            if hasher.hexdigest() != digest.hex:
                raise BlobCorrupt(f"{path}: its bytes do not hash to {digest}")
            self._sync(key, "complete_multipart_upload", Key=key, UploadId=session, MultipartUpload={"Parts": parts})
        except BaseException as exc:
            if session:
                try:
                    self._sync(key, "abort_multipart_upload", Key=key, UploadId=session)
                except Exception:  # the sweep aborts it
                    log.warning("aborting a copy's multipart upload failed", exc_info=True, extra={"object": key})
            if isinstance(exc, ClientError):
                raise self._failed(key, exc) from exc
            raise

    async def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            await self._call(key, "head_object", Key=key)
        except ClientError:
            return False
        return True

    async def _drop(self, upload_id: str, state: StoreUpload | None) -> None:
        """Forget an upload's multipart upload, tails and record (not a completed blob object)."""
        from botocore.exceptions import ClientError

        if state is not None and state.session:
            try:
                await self._call(upload_id, "abort_multipart_upload", Key=self._blob_key(upload_id),
                                 UploadId=state.session)
            except ClientError as exc:
                if _code(exc) not in _NO_UPLOAD:
                    raise self._failed(f"abort {upload_id}", exc) from exc
        listing = await self._call(upload_id, "list_objects_v2", Prefix=f"{self.prefix}uploads/{upload_id}/")
        for item in listing.get("Contents", []):
            await self._delete_object(str(item["Key"]))
        await self._state.delete_store_upload(upload_id)

    async def upload_delete(self, upload_id: str) -> None:
        check_upload_id(self.name, upload_id)
        await self._drop(upload_id, await self._state.store_upload(upload_id))

    async def upload_ids(self) -> dict[str, float]:
        return await self._state.store_upload_ids()

    # the sweep

    async def sweep(self) -> int:
        """Abort the multipart uploads and delete the objects under the prefix that no upload row or
        blob row names and that are older than ``orphan_grace``.

        The bucket is listed before the rows are read, and upload rows before blob rows: an object
        that was named when listed is still named when the rows are read (an upload row outlives
        the claim of its blob's key), so only objects that nothing named are removed."""
        import datetime

        cutoff = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=self.orphan_grace)
        multipart = [item for item in await self._list("list_multipart_uploads", "Uploads")
                     if item["Initiated"] < cutoff]
        objects = [str(item["Key"]) for item in await self._list("list_objects_v2", "Contents")
                   if item["LastModified"] < cutoff]
        uploads = await self._state.store_upload_ids()
        blob_keys = await self._state.store_blob_keys()
        removed = 0
        for item in multipart:
            key, session = str(item["Key"]), str(item["UploadId"])
            upload_id = self._upload_of(key)
            if upload_id is None:
                continue
            state = await self._state.store_upload(upload_id) if upload_id in uploads else None
            if state is None or state.session not in ("", session):
                await self._abort(key, session)
                removed += 1
        for key in objects:
            upload_id = self._upload_of(key)
            if upload_id is None or upload_id in uploads or key in blob_keys:
                continue
            await self._delete_object(key)
            removed += 1
        return removed

    def _upload_of(self, key: str) -> str | None:
        """The upload id an object's key names (``blobs/<id>``, ``uploads/<id>/...``); None: not the store's."""
        name = key[len(self.prefix):]
        for folder in ("blobs/", "uploads/"):
            if name.startswith(folder):
                return name[len(folder):].split("/", 1)[0] or None
        return None

    async def _abort(self, key: str, session: str) -> None:
        from botocore.exceptions import ClientError

        try:
            await self._call(key, "abort_multipart_upload", Key=key, UploadId=session)
        except ClientError as exc:
            if _code(exc) not in _NO_UPLOAD:
                raise self._failed(f"abort {key}", exc) from exc

    async def _list(self, method: str, field: str) -> list[dict[str, Any]]:
        """Every entry of a listing under the prefix, page by page."""
        found: list[dict[str, Any]] = []
        params: dict[str, str] = {}
        while True:
            page = await self._call(method, method, Prefix=self.prefix, **params)
            found += page.get(field, [])
            if not page.get("IsTruncated"):
                return found
            if method == "list_objects_v2":
                params = {"ContinuationToken": page["NextContinuationToken"]}
            else:
                params = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}


class _Writer:
    """Buffers one part at a time; each full part is uploaded and recorded (through the event loop) in
    the store's part threads, at most :data:`PARTS_IN_FLIGHT` at once while ``write`` takes the next
    bytes; ``close`` waits for them and leaves the rest as the upload's tail object."""

    def __init__(self, store: S3BlobStore, upload_id: str, session: str, offset: int, tail: bytes,
                 loop: asyncio.AbstractEventLoop, holder: str | None) -> None:
        self._store, self._id, self._session, self._loop = store, upload_id, session, loop
        #: the request's lock, renewed before each record (None: the caller took none)
        self._holder = holder
        self._offset = offset
        self._buffer = bytearray(tail)
        self._number = offset // store.part_size + 1
        self._size = offset
        self._pending: list[Future[None]] = []

    def _wait(self, make: Callable[[], Awaitable[T]]) -> T:
        async def run() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result()

    def write(self, data: bytes | memoryview) -> None:
        store = self._store
        limit = store.max_size
        if self._size + len(data) > limit:
            raise SizeInvalid(f"the blob is larger than this registry's S3 storage takes: {limit} bytes"
                              f" (storage.s3.part_size {store.part_size} x {MAX_PARTS} parts)")
        self._buffer += data
        self._size += len(data)
        while len(self._buffer) >= store.part_size:
            self._put_part()
            del self._buffer[: store.part_size]

    def _put_part(self) -> None:
        """Send the buffer's first part, once a part in flight has gone (memory: the parts in flight and
        the buffer), copied once."""
        from botocore.exceptions import ClientError

        store = self._store
        while len(self._pending) >= PARTS_IN_FLIGHT:
            self._pending.pop(0).result()
        with memoryview(self._buffer) as view:
            body = bytes(view[: store.part_size])
        if not self._session:
            key = store._blob_key(self._id)
            try:
                self._session = str(store._sync(key, "create_multipart_upload", Key=key)["UploadId"])
            except ClientError as exc:
                raise store._failed(f"upload {self._id}", exc) from exc
            crash_point("s3-multipart-begun")
            self._wait(lambda: store._state.save_store_upload(self._id, self._session, self._offset))
        self._pending.append(store._parts.submit(self._upload_part, self._number, body))
        self._number += 1

    def _upload_part(self, number: int, body: bytes) -> None:
        from botocore.exceptions import ClientError

        store = self._store
        key = store._blob_key(self._id)
        try:
            answer = store._sync(key, "upload_part", Key=key, UploadId=self._session, PartNumber=number, Body=body)
        except ClientError as exc:
            if _code(exc) == "NoSuchUpload":  # cancelled (or purged) while this request wrote
                raise UploadMissing(f"s3 bucket {store.bucket}: upload {self._id} is gone") from exc
            raise store._failed(f"upload {self._id} part {number}", exc) from exc
        part = StorePart(number, str(answer["ETag"]), len(body))
        self._wait(lambda: store._still_locked(self._id, self._holder))
        self._wait(lambda: store._state.save_store_part(self._id, part))

    def _settle(self) -> list[BaseException]:
        """Wait for the parts in flight; their errors."""
        errors = [error for future in self._pending if (error := future.exception()) is not None]
        self._pending.clear()
        return errors

    def close(self) -> Written:
        from botocore.exceptions import ClientError

        store = self._store
        errors = self._settle()
        if errors:
            raise errors[0]
        if self._buffer:
            key = store._tail_key(self._id, self._size)
            try:
                store._sync(key, "put_object", Key=key, Body=bytes(self._buffer))
            except ClientError as exc:
                raise store._failed(key, exc) from exc
            crash_point("s3-tail-written")
        self._wait(lambda: store._still_locked(self._id, self._holder))
        self._wait(lambda: store._state.save_store_upload(self._id, self._session, self._size))
        return Written(self._size, DURABLE)

    def abort(self) -> None:
        """Let the parts in flight end; nothing to undo: parts past the recorded size are rewritten by
        the next request."""
        self._settle()
