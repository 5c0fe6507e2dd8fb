"""The dispatcher's contract with access control and the error table, checked without a server."""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cargohold import errcodes
from cargohold.api.request import RegistryRequest
from cargohold.auth.access import Access, OpenAccess
from cargohold.auth.controller import InsufficientScope, TokenAccessController
from cargohold.auth.jwt import Verifier
from tests.auth.world import store_for


async def _receive() -> dict[str, object]:
    return {"type": "http.request", "body": b""}


def test_a_request_is_granted_nothing_until_the_controller_answers() -> None:
    scope = {"type": "http", "method": "GET", "path": "/v2/a/b/tags/list", "headers": []}
    request = RegistryRequest(scope, _receive, {"name": "a/b"}, OpenAccess())
    assert not request.grant.everything
    assert not request.grant.allows(Access("repository", "a/b", "pull"))
    assert not request.grant.allows(Access("registry", "catalog", "*"))


def test_statuses_live_in_the_error_table() -> None:
    with pytest.raises(TypeError):
        errcodes.SizeInvalid("too big", status=413)  # type: ignore[call-arg]
    too_large = errcodes.ManifestTooLarge("too big")
    assert isinstance(too_large, errcodes.SizeInvalid)
    assert (too_large.to_json()["code"], too_large.status) == ("SIZE_INVALID", 413)
    assert (errcodes.TooManyTags().code.name, errcodes.TooManyTags.status) == ("TAG_INVALID", 414)
    assert (errcodes.RequestUnsupported().code.name, errcodes.RequestUnsupported.status) == ("UNSUPPORTED", 400)
    for cls in vars(errcodes).values():
        if inspect.isclass(cls) and issubclass(cls, errcodes.RegistryError) and cls is not errcodes.RegistryError:
            overrides = "status" in vars(cls)
            assert cls.status == cls.code.status or overrides, cls
    # the client's table knows the spec's codes, each once
    assert errcodes.ERROR_TYPES["SIZE_INVALID"] is errcodes.SizeInvalid


@dataclass
class Credentials:
    """Just what a controller reads: no request, no ASGI scope."""

    headers: dict[str, str] = field(default_factory=dict)
    client: str = "192.0.2.7:40000"
    origin: str = "https://registry.example"


def test_a_controller_authorizes_from_credentials_alone(tmp_path: Path) -> None:
    store = store_for(tmp_path)
    store.set_public("team/public", True)
    controller = TokenAccessController(Verifier("cargohold"), store.inner, "cargohold", "cargohold")
    pull = [Access("repository", "team/public", "pull")]
    grant = asyncio.run(controller.authorize(Credentials(), pull))
    assert grant.allows(pull[0])
    with pytest.raises(InsufficientScope) as refused:
        asyncio.run(controller.authorize(Credentials(), [Access("repository", "team/public", "push")]))
    assert 'realm="https://registry.example/auth/token"' in refused.value.headers["WWW-Authenticate"]
    store.close()
