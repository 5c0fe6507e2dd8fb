"""Namespace quotas in both metadata databases: a quota set while a push that found none is open waits for
that push to commit and counts its bytes; the usage job recomputes a quota's use that went astray and
refreshes the figures."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import pytest

from cargohold.jobs import usage_job
from cargohold.metadata import open_access_store, open_metadata_store
from cargohold.metadata.store import MetadataStore, NewManifest
from cargohold.quotas import Quota
from cargohold.service.quota import charge_quota
from tests.support.postgres import BACKENDS, database_url

LAYER = b"layer bytes " * 1000


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


MANIFEST = NewManifest(digest_of(b"manifest"), "application/vnd.oci.image.manifest.v1+json", b"manifest", None, None,
                       None, [digest_of(LAYER)])


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request, tmp_path)


def set_quota_elsewhere(url: str, namespace: str) -> tuple[Quota, float]:
    """Set a quota from another connection and event loop (as the admin CLI would), and when that returned."""

    async def set_quota() -> Quota:
        access = open_access_store(url)
        try:
            async with access.transaction() as tx:
                return await tx.set_quota(namespace, "1GiB", "root")
        finally:
            await access.close()

    quota = asyncio.run(set_quota())
    return quota, time.monotonic()


async def push(meta: MetadataStore, repository: str) -> None:
    async with meta.transaction() as tx:
        found = await tx.ensure_repository(repository)
        await tx.add_blob(found, digest_of(LAYER), len(LAYER))
        await tx.put_manifest(found, MANIFEST, ["latest"])


def test_a_quota_set_during_a_push_waits_for_it_and_counts_it(url: str) -> None:
    async def scenario() -> None:
        meta = open_metadata_store(url)
        try:
            async with meta.transaction() as tx:
                await charge_quota(tx, "acme/app", None, MANIFEST)  # no quota yet: nothing held but the read
                found = await tx.ensure_repository("acme/app")
                await tx.add_blob(found, digest_of(LAYER), len(LAYER))
                await tx.put_manifest(found, MANIFEST, ["latest"])
                setting = asyncio.create_task(asyncio.to_thread(set_quota_elsewhere, url, "acme"))
                await asyncio.sleep(0.5)  # only the awaited sleep: nothing of another task joins the unit of work
                assert not setting.done(), "the quota was set while a push that found none was open"
                committed = time.monotonic()
            quota, done = await setting
            assert done >= committed
            assert quota.used_bytes == len(LAYER) + len(MANIFEST.content)
        finally:
            await meta.close()

    asyncio.run(scenario())


def test_the_usage_job_refreshes_the_figures_and_corrects_a_quota(url: str) -> None:
    async def scenario() -> None:
        meta = open_metadata_store(url)
        access = open_access_store(url)
        try:
            await push(meta, "acme/app")
            await push(meta, "acme/other")  # the same manifest: its layer once, its bytes twice
            await push(meta, "solo")
            quota = await access.set_quota("acme", 10_000_000, None)
            assert quota.used_bytes == len(LAYER) + 2 * len(MANIFEST.content)
            assert (await meta.usage_report()).computed_at is None
            async with meta.transaction() as tx:  # a path that deleted a manifest and forgot the quota
                found = await tx.repository_id("acme/other")
                assert found is not None and await tx.delete_manifest(found, MANIFEST.digest)
            before = time.time()
            await usage_job(meta).run()
            assert [q.used_bytes for q in await access.quotas()] == [len(LAYER) + len(MANIFEST.content)]
            report = await meta.usage_report()
            assert report.computed_at is not None and report.computed_at >= int(before)
            figures = {u.name: (u.total_bytes, u.exclusive_bytes, u.shared_bytes, u.unreferenced_bytes)
                       for u in report.repositories}
            size = len(MANIFEST.content)
            assert figures == {"acme/app": (len(LAYER) + size, size, len(LAYER), 0),
                               "acme/other": (0, 0, 0, len(LAYER)), "solo": (len(LAYER) + size, size, len(LAYER), 0)}
            assert [(u.name, u.total_bytes, u.exclusive_bytes) for u in report.namespaces] == [
                ("acme", len(LAYER) + size, size)]
        finally:
            await access.close()
            await meta.close()

    asyncio.run(scenario())
