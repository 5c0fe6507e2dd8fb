"""Fixtures shared by every test folder: a real cargohold server on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import CargoholdServer, cargohold


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CargoholdServer]:
    """One server for tests that use their own repository names."""
    with cargohold(tmp_path_factory.mktemp("registry")) as server:
        yield server


@pytest.fixture()
def fresh_registry(tmp_path: Path) -> Iterator[CargoholdServer]:
    """A server of the test's own, for checks on everything in storage."""
    with cargohold(tmp_path) as server:
        yield server
