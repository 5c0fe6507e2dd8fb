"""A token-auth cargohold with a cast of accounts, shared by the auth tests.

The cast (passwords in :data:`tests.auth.world.SECRETS`): ``root`` (superuser),
``owner`` (owns the ``owner/`` namespace and the ``acme`` organization),
``reader``, ``writer`` and ``admin`` (granted read, write and admin on both of
owner's repositories; ``writer`` is also in ``acme/devs``, which may write
``acme/*``), the robot ``owner+ci`` (granted write), ``other`` (no grants) and
``gone`` (disabled). ``owner/public-app`` is public, ``owner/private-app``
private; both hold an image tagged ``v1``. The world is made on SQLite + filesystem and on
PostgreSQL + S3, and every test that uses it runs on both, but for the modules that name one setup
(``pytest.mark.parametrize("world", [...], indirect=True)``): the permission matrix, the routing, the clients.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.backends import MATRIX, setup_for
from tests.support.servers import cargohold

from .world import FAST_ENV, PRIVATE, PUBLIC, World, populate, push_image, store_for


@pytest.fixture(scope="session", params=MATRIX)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The cast on a token-auth server, once on each setup of the matrix (SQLite + filesystem,
    PostgreSQL + S3)."""
    setup = setup_for(request.param, request)
    tmp = tmp_path_factory.mktemp("auth-world")
    store = store_for(tmp / "data", setup.database_url)
    populate(store)
    store.close()
    with cargohold(tmp, "--auth", "token", env={**FAST_ENV, **setup.env}, database_url=setup.database_url) as server:
        world = World(server)
        with world.client("owner", f"repository:{PUBLIC}:pull,push", f"repository:{PRIVATE}:pull,push") as c:
            push_image(c, PUBLIC, "v1")
            push_image(c, PRIVATE, "v1")
        yield world
