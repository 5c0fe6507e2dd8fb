"""The service records each change in the change's own transaction, and batches reads.

A real SQLite store and filesystem blob store; the origin is set as the HTTP layer sets it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from cargohold.errcodes import ManifestBlobUnknown, ManifestUnknown
from cargohold.events import Action, Event
from cargohold.events.audit import EventFilter, LoggedEvent
from cargohold.events.origin import FixedOrigin, origin_scope
from cargohold.events.recorder import FLUSH_EVENTS, Recorder
from cargohold.metadata import MetadataStore, migrate, open_metadata_store
from cargohold.metadata.store import MetadataError
from cargohold.reference import TagRef
from cargohold.service import Registry, RegistryOptions, parse_reference
from cargohold.storage import open_blob_store

ALICE = FixedOrigin(actor="alice", actor_kind="user", address="10.0.0.7", user_agent="test-agent/1",
                    request_id="req-1", host="registry.test", method="PUT")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest(config: bytes, *layers: bytes) -> bytes:
    def descriptor(blob: bytes, media_type: str) -> dict[str, Any]:
        return {"mediaType": media_type, "digest": sha256(blob), "size": len(blob)}

    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor(config, "application/vnd.oci.image.config.v1+json"),
        "layers": [descriptor(layer, "application/vnd.oci.image.layer.v1.tar") for layer in layers],
    }).encode()


async def body(data: bytes) -> AsyncIterator[bytes]:
    yield data


def reader(raw: bytes) -> Any:
    async def read(limit: int) -> bytes | None:
        return raw

    return read


def open_registry(tmp_path: Path, recorder: Recorder | None = None) -> tuple[Registry, MetadataStore]:
    migrate(f"sqlite://{tmp_path / 'm.db'}")
    meta = open_metadata_store(f"sqlite://{tmp_path / 'm.db'}")
    blobs = open_blob_store("filesystem", {"root": str(tmp_path / "blobs")})
    return Registry(blobs, meta, RegistryOptions(), recorder=recorder), meta


async def logged(meta: MetadataStore) -> list[LoggedEvent]:
    return list(reversed(await meta.list_events(EventFilter(), 1000)))


def summary(entries: Sequence[LoggedEvent]) -> list[tuple[str, str, str | None, str | None]]:
    return [(str(e.event.action), e.event.repository, e.event.tag, e.event.digest) for e in entries]


async def push_blob(registry: Registry, repository: str, data: bytes) -> None:
    upload = await registry.start_upload(repository, "sha256")
    await registry.complete_upload(repository, upload, sha256(data), body(data), len(data))


def test_pushes_deletes_and_mounts_are_recorded_with_their_origin(tmp_path: Path) -> None:
    registry, meta = open_registry(tmp_path)
    config, layer = b'{"os":"linux"}', b"layer-bytes"
    first, second = manifest(config, layer), manifest(config)

    async def scenario() -> None:
        with origin_scope(ALICE):
            await push_blob(registry, "team/app", config)
            await registry.upload_blob("team/app", sha256(layer), body(layer), len(layer), "sha256")
            await registry.put_manifest("team/app", TagRef("v1"), OCI_MANIFEST, len(first), reader(first))
            # v1 moves from the first manifest to the second
            await registry.put_manifest("team/app", TagRef("v1"), OCI_MANIFEST, len(second), reader(second))
            await registry.mount_blob("team/copy", "team/app", sha256(layer))
            await registry.mount_found_blob("team/copy", sha256(config), lambda name: name == "team/app")
            await registry.delete_manifest("team/app", TagRef("v1"))
            await registry.delete_manifest("team/app", parse_reference(sha256(first)))
            await registry.delete_blob("team/copy", sha256(layer))
        entries = await logged(meta)
        assert summary(entries) == [
            ("repository.create", "team/app", None, None),
            ("blob.push", "team/app", None, sha256(config)),
            ("blob.push", "team/app", None, sha256(layer)),
            ("manifest.push", "team/app", "v1", sha256(first)),
            ("manifest.push", "team/app", "v1", sha256(second)),
            ("repository.create", "team/copy", None, None),
            ("blob.mount", "team/copy", None, sha256(layer)),
            ("blob.mount", "team/copy", None, sha256(config)),
            ("tag.delete", "team/app", "v1", sha256(second)),
            ("manifest.delete", "team/app", None, sha256(first)),
            ("blob.delete", "team/copy", None, sha256(layer)),
        ]
        for entry in entries:
            e = entry.event
            assert (e.actor, e.actor_kind, e.address, e.user_agent, e.request_id, e.host) == (
                "alice", "user", "10.0.0.7", "test-agent/1", "req-1", "registry.test")
        push1, push2 = entries[3].event, entries[4].event
        assert (push1.media_type, push1.size, dict(push1.detail)) == (OCI_MANIFEST, len(first), {"tags": ["v1"]})
        # the moved tag and where it pointed before
        assert dict(push2.detail) == {"tags": ["v1"], "previous": {"v1": sha256(first)}}
        assert entries[2].event.size == len(layer)
        assert dict(entries[6].event.detail) == {"from": "team/app"}
        assert dict(entries[7].event.detail) == {"from": "team/app"}
        assert (entries[9].event.media_type, entries[9].event.size) == (OCI_MANIFEST, len(first))
        await meta.close()

    asyncio.run(scenario())


def test_a_push_by_digest_records_its_tags_and_an_unchanged_tag_is_not_moved(tmp_path: Path) -> None:
    registry, meta = open_registry(tmp_path)
    config = b"{}"
    raw = manifest(config)

    async def scenario() -> None:
        await push_blob(registry, "r", config)
        await registry.put_manifest("r", TagRef("a"), OCI_MANIFEST, len(raw), reader(raw))
        await registry.put_manifest("r", parse_reference(sha256(raw)), OCI_MANIFEST, len(raw), reader(raw),
                                    tags=["a", "b", "c"])
        push = (await logged(meta))[-1].event
        assert (push.action, push.tag, push.digest) == (Action.MANIFEST_PUSH, "a", sha256(raw))
        assert dict(push.detail) == {"tags": ["a", "b", "c"]}  # "a" pointed here already: nothing moved
        await meta.close()

    asyncio.run(scenario())


def test_a_refused_or_failed_change_leaves_no_entry(tmp_path: Path) -> None:
    registry, meta = open_registry(tmp_path)
    raw = manifest(b"{}", b"layer")

    async def scenario() -> None:
        # refused inside the transaction: a blob it references is missing
        with pytest.raises(ManifestBlobUnknown):
            await registry.put_manifest("team/app", TagRef("v1"), OCI_MANIFEST, len(raw), reader(raw))
        assert await logged(meta) == [] and await meta.repository_id("team/app") is None
        await push_blob(registry, "team/app", b"{}")
        before = await logged(meta)
        with pytest.raises(ManifestUnknown):
            await registry.delete_manifest("team/app", TagRef("nope"))
        with pytest.raises(ManifestUnknown):
            await registry.delete_manifest("team/app", parse_reference(sha256(b"nope")))
        assert await mount_of_nothing(registry) is None
        assert await logged(meta) == before
        await meta.close()

    asyncio.run(scenario())


async def mount_of_nothing(registry: Registry) -> object:
    return await registry.mount_blob("elsewhere/app", "team/app", sha256(b"not stored"))


def test_an_event_that_cannot_be_written_rolls_its_change_back(tmp_path: Path) -> None:
    class Refusing(Recorder):
        async def record(self, tx: Any, event: Event) -> None:
            await super().record(tx, event)
            if event.action is Action.MANIFEST_PUSH:
                raise MetadataError("metadata: disk I/O error")

    registry, meta = open_registry(tmp_path, Refusing())
    raw = manifest(b"{}")

    async def scenario() -> None:
        await push_blob(registry, "r", b"{}")
        with pytest.raises(MetadataError):
            await registry.put_manifest("r", TagRef("v1"), OCI_MANIFEST, len(raw), reader(raw))
        assert await meta.tagged_manifest("r", "v1") is None
        assert [e.event.action for e in await logged(meta)] == [Action.REPOSITORY_CREATE, Action.BLOB_PUSH]
        await meta.close()

    asyncio.run(scenario())


def test_reads_are_batched_and_written_every_second_at_500_and_on_stop(tmp_path: Path) -> None:
    migrate(f"sqlite://{tmp_path / 'm.db'}")
    meta = open_metadata_store(f"sqlite://{tmp_path / 'm.db'}")
    recorder = Recorder(reads=meta)

    def pull(n: int) -> None:
        recorder.read(Action.MANIFEST_PULL, repository="r", tag=f"t{n}")

    async def count() -> int:
        return len(await meta.list_events(EventFilter(), 10_000))

    async def scenario() -> None:
        recorder.start()
        pull(0)
        assert await count() == 0  # held in memory, not written by read()
        await asyncio.sleep(1.3)
        assert await count() == 1  # the second passed
        for n in range(FLUSH_EVENTS):
            pull(n)
        for _ in range(20):  # a full batch goes at once, well before the next second
            await asyncio.sleep(0.02)
            if await count() > 1:
                break
        assert await count() == 1 + FLUSH_EVENTS
        with origin_scope(ALICE):
            for n in range(3):
                pull(n)
        await recorder.stop()
        assert await count() == 4 + FLUSH_EVENTS  # what was held is written on stop
        newest = (await meta.list_events(EventFilter(), 1))[0].event
        assert (newest.actor, newest.request_id, newest.tag) == ("alice", "req-1", "t2")  # the origin of the read
        await meta.close()

    asyncio.run(scenario())


def test_identical_reads_in_one_batch_are_one_entry_with_their_count(tmp_path: Path) -> None:
    """A pull storm is a row per client and image a second, not a row per request; any difference
    (another image, another client) is an entry of its own."""
    migrate(f"sqlite://{tmp_path / 'm.db'}")
    meta = open_metadata_store(f"sqlite://{tmp_path / 'm.db'}")
    recorder = Recorder(reads=meta)
    bob = FixedOrigin(actor="bob", actor_kind="user", address="10.0.0.8", user_agent="test-agent/1",
                      request_id="req-9", method="GET")

    async def scenario() -> None:
        with origin_scope(ALICE):
            recorder.read(Action.MANIFEST_PULL, repository="r", tag="a", digest="sha256:1")
        with origin_scope(dataclasses.replace(ALICE, request_id="req-2")):
            for _ in range(3):
                recorder.read(Action.MANIFEST_PULL, repository="r", tag="a", digest="sha256:1")
            recorder.read(Action.MANIFEST_PULL, repository="r", tag="b", digest="sha256:1")
        with origin_scope(bob):
            recorder.read(Action.MANIFEST_PULL, repository="r", tag="a", digest="sha256:1")
        assert await recorder.flush()
        entries = sorted(((e.event.actor, e.event.tag, e.event.request_id, e.event.detail.get("count"))
                          for e in await logged(meta)), key=str)
        assert entries == [("alice", "a", "req-1", 4), ("alice", "b", "req-2", None), ("bob", "a", "req-9", None)]
        with origin_scope(ALICE):  # the next batch starts counting afresh
            recorder.read(Action.MANIFEST_PULL, repository="r", tag="a", digest="sha256:1")
        assert await recorder.flush()
        assert len(await logged(meta)) == 4
        await meta.close()

    asyncio.run(scenario())


def test_blob_pulls_are_recorded_only_when_asked(tmp_path: Path) -> None:
    async def pulls(record_blob_pulls: bool, where: Path) -> list[str]:
        where.mkdir()
        registry, meta = open_registry(where, Recorder(blob_pulls=record_blob_pulls))
        registry.recorder.reads = meta
        await push_blob(registry, "r", b"data")
        digest, size = await registry.blob_size("r", sha256(b"data"))
        registry.blob_pulled("r", digest, size)
        await registry.recorder.stop()
        found = [str(e.event.action) for e in await logged(meta)]
        await meta.close()
        return found

    assert asyncio.run(pulls(False, tmp_path / "off")) == ["repository.create", "blob.push"]
    assert asyncio.run(pulls(True, tmp_path / "on")) == ["repository.create", "blob.push", "blob.pull"]


def test_reads_the_database_refuses_are_kept_for_the_next_try(tmp_path: Path) -> None:
    migrate(f"sqlite://{tmp_path / 'm.db'}")
    meta = open_metadata_store(f"sqlite://{tmp_path / 'm.db'}")

    class Refusing:
        """The store, refusing the first batch (the disk was full for a moment)."""

        refusals = 1

        async def add_event(self, event: Event, deliver_to: Sequence[str] = ()) -> int:
            return await meta.add_event(event, deliver_to)

        async def add_events(self, events: Sequence[tuple[Event, Sequence[str]]]) -> None:
            if self.refusals:
                self.refusals -= 1
                raise MetadataError("metadata: database or disk is full")
            await meta.add_events(events)

    recorder = Recorder(reads=Refusing())

    async def scenario() -> None:
        recorder.read(Action.MANIFEST_PULL, repository="r", tag="a")
        assert not await recorder.flush()
        recorder.read(Action.MANIFEST_PULL, repository="r", tag="b")
        assert await recorder.flush()
        assert [e.event.tag for e in await logged(meta)] == ["a", "b"]  # none lost, in order
        await meta.close()

    asyncio.run(scenario())
