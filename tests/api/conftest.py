from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.servers import CargoholdServer


@pytest.fixture()
def client(registry: CargoholdServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry.url, timeout=30) as c:
        yield c


@pytest.fixture()
def fresh_client(fresh_registry: CargoholdServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fresh_registry.url, timeout=30) as c:
        yield c


@pytest.fixture()
def repo(request: pytest.FixtureRequest) -> str:
    """A repository name of the test's own on the shared server."""
    return "test/" + request.node.name.lower().replace("[", "-").replace("]", "").replace("_", "-")
