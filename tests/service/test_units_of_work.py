"""Units of work: a manifest push checks its references and stores the manifest as one step against other
writers; an upload commit records the blob and completes the session together."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from cargohold.formats import MediaType
from cargohold.metadata import migrate
from cargohold.metadata.sqlite import SqliteMetadataStore
from cargohold.metadata.store import MetadataError
from cargohold.reference import TagRef
from cargohold.service import Registry, RegistryOptions
from cargohold.service.common import Guard
from cargohold.service.manifests import Manifests
from cargohold.storage import open_blob_store

CONFIG = "sha256:" + hashlib.sha256(b"{}").hexdigest()


class DeleteRacingStore(SqliteMetadataStore):
    """Right after the reference check, another worker process unlinks the referenced blob."""

    outcome = ""

    async def unlinked_blobs(self, repository_id: int, digests: Iterable[str]) -> set[str]:
        missing = await super().unlinked_blobs(repository_id, digests)
        other = sqlite3.connect(self.path, timeout=0, isolation_level=None)
        try:
            other.execute("DELETE FROM repository_blobs WHERE digest = ?", (CONFIG,))
            self.outcome = "deleted"
        except sqlite3.OperationalError as exc:
            self.outcome = str(exc)
        finally:
            other.close()
        return missing


def test_a_blob_unlinked_during_a_push_cannot_slip_between_the_check_and_the_insert(tmp_path: Path) -> None:
    path = str(tmp_path / "m.db")
    migrate(f"sqlite://{path}")
    meta = DeleteRacingStore(path)
    manifests = Manifests(meta, Guard(RegistryOptions()))
    body = json.dumps({
        "schemaVersion": 2,
        "mediaType": MediaType.OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": CONFIG, "size": 2},
        "layers": [],
    }).encode()

    async def read(limit: int) -> bytes | None:
        return body

    async def scenario() -> None:
        await meta.add_blob(await meta.ensure_repository("a/b"), CONFIG, 2)
        await manifests.put("a/b", TagRef("v1"), MediaType.OCI_MANIFEST, len(body), read)
        # the other writer waited for the push: the manifest never references an unlinked blob
        assert meta.outcome == "database is locked"
        assert await meta.linked_blob_size("a/b", CONFIG) == 2
        assert await meta.tagged_manifest("a/b", "v1") is not None
        await meta.close()

    asyncio.run(scenario())


class FailingCompletionStore(SqliteMetadataStore):
    """Marking the upload completed fails once (the database went away for a moment)."""

    failures = 1

    async def complete_upload(self, upload_id: str) -> None:
        if self.failures:
            self.failures -= 1
            raise MetadataError("metadata: disk I/O error")
        await super().complete_upload(upload_id)


def test_an_upload_commit_records_the_blob_and_completes_the_session_together(tmp_path: Path) -> None:
    path = str(tmp_path / "m.db")
    migrate(f"sqlite://{path}")
    meta = FailingCompletionStore(path)
    registry = Registry(open_blob_store("filesystem", {"root": str(tmp_path / "blobs")}), meta, RegistryOptions())
    digest = "sha256:" + hashlib.sha256(b"layer").hexdigest()

    async def body() -> AsyncIterator[bytes]:
        yield b"layer"

    async def scenario() -> None:
        upload_id = await registry.start_upload("a/b")
        with pytest.raises(MetadataError):
            await registry.complete_upload("a/b", upload_id, digest, body(), 5)
        # nothing of the failed step is left: neither the repository nor the blob's record
        assert await meta.repository_id("a/b") is None and await meta.blob_size(digest) is None
        # the retried final PUT completes it
        await registry.complete_upload("a/b", upload_id, digest, body(), 5)
        assert await meta.linked_blob_size("a/b", digest) == 5
        assert (await meta.upload(upload_id)).completed  # type: ignore[union-attr]
        await meta.close()

    asyncio.run(scenario())
