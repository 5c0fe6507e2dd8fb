from __future__ import annotations

import re
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
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    return f"test/{slug}"
