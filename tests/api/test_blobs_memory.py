"""The blob API tests of ``test_blobs``, against a server on the memory store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.test_blobs import *  # noqa: F403 - the same tests, collected here with the fixture below
from tests.support.servers import CargoholdServer, cargohold


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CargoholdServer]:
    with cargohold(tmp_path_factory.mktemp("memory-registry"), "--workers", "1",
                   env={"CARGOHOLD_STORAGE_DRIVER": "memory"}) as server:
        yield server
    assert not (server.data_dir / "blobs").exists(), "the memory store wrote blobs to disk"
