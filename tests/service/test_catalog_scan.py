"""A filtered catalog page is read a slice at a time (service layer, real SQLite and filesystem stores)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cargohold.metadata import MetadataStore, migrate, open_metadata_store
from cargohold.service import Registry, RegistryOptions
from cargohold.storage import open_blob_store


class CountingStore:
    """The real store, counting the names each listing returns."""

    def __init__(self, inner: MetadataStore) -> None:
        self.inner = inner
        self.listed: list[int] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def list_repositories(self, limit: int | None, last: str | None) -> list[str]:
        names = await self.inner.list_repositories(limit, last)
        self.listed.append(len(names))
        return names


@pytest.fixture
def world(tmp_path: Path) -> tuple[Registry, CountingStore]:
    migrate(f"sqlite://{tmp_path / 'm.db'}")
    meta = CountingStore(open_metadata_store(f"sqlite://{tmp_path / 'm.db'}"))

    async def fill() -> None:
        for i in range(50):
            await meta.inner.ensure_repository(f"team/r{i:02d}")
            await meta.inner.ensure_repository(f"zzz/other{i:02d}")

    asyncio.run(fill())
    blobs = open_blob_store("filesystem", {"root": str(tmp_path / "blobs")})
    return Registry(blobs, meta, RegistryOptions()), meta  # type: ignore[arg-type]


def test_a_page_reads_only_the_slices_it_needs(world: tuple[Registry, CountingStore]) -> None:
    registry, meta = world
    page = asyncio.run(registry.catalog_where(lambda name: name.startswith("team/"), 5, None, scan=8))
    assert page == [f"team/r{i:02d}" for i in range(5)]
    assert meta.listed == [8]  # not the 100 names there are


def test_pages_follow_on_past_hidden_names_and_end(world: tuple[Registry, CountingStore]) -> None:
    registry, meta = world
    visible = lambda name: name.startswith("zzz/") or name == "team/r49"  # noqa: E731
    page = asyncio.run(registry.catalog_where(visible, 3, "team/r10", scan=8))
    assert page == ["team/r49", "zzz/other00", "zzz/other01"]
    everything = asyncio.run(registry.catalog_where(visible, None, None, scan=8))
    assert everything == ["team/r49", *(f"zzz/other{i:02d}" for i in range(50))]
    assert asyncio.run(registry.catalog_where(visible, 10, "zzz/other45", scan=8)) == [
        f"zzz/other{i:02d}" for i in range(46, 50)
    ]


def test_slices_double_for_a_caller_who_sees_little(world: tuple[Registry, CountingStore]) -> None:
    registry, meta = world
    page = asyncio.run(registry.catalog_where(lambda name: name == "zzz/other49", 3, None, scan=64))
    assert page == ["zzz/other49"]
    assert meta.listed == [16, 32, 52]  # 100 names in three reads, not 100 / 16
