"""Every grammar check matches the whole text: a trailing newline (which ``$`` lets through) is refused."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from cargohold import jsontext
from cargohold.access_model import InvalidName, check_account_name, check_team_name, robot_name
from cargohold.api.admin_endpoints import AdminApi
from cargohold.api.handlers import HANDLERS
from cargohold.api.routes import build_routes
from cargohold.digest import Digest, DigestError
from cargohold.http import Router
from cargohold.reference import Reference, ReferenceError, is_repository_name, is_tag
from cargohold.storage.driver import UploadMissing
from cargohold.storage.filesystem import _check_upload_id

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize("check, good", [
    (is_tag, "v1.0_rc-1"),
    (is_repository_name, "team/app"),
])
def test_names_and_tags(check: Callable[[str], bool], good: str) -> None:
    assert check(good)
    for bad in (f"{good}\n", f"\n{good}", f"{good}\r\n"):
        assert not check(bad), repr(bad)


def test_digests() -> None:
    assert str(Digest.parse(DIGEST)) == DIGEST
    for bad in (f"{DIGEST}\n", f"sha256\n:{'a' * 64}", "foo:bar\n"):
        with pytest.raises(DigestError, match="invalid digest"):
            Digest.parse(bad)


def test_client_references() -> None:
    assert Reference.parse("reg.example:5000/team/app:v1").tag == "v1"
    for bad in ("reg.example:5000/team/app:v1\n", "reg.example:5000/team/app\n:v1", f"team/app@{DIGEST}\n"):
        with pytest.raises(ReferenceError):
            Reference.parse(bad)


@pytest.mark.parametrize("check, good", [
    (check_account_name, "alice"),
    (check_team_name, "devs"),
    (lambda short: robot_name("alice", short), "ci"),
])
def test_account_team_and_robot_names(check: Callable[[str], object], good: str) -> None:
    check(good)
    with pytest.raises(InvalidName):
        check(f"{good}\n")


def test_upload_ids() -> None:
    _check_upload_id("0123abcd")
    with pytest.raises(UploadMissing):
        _check_upload_id("0123abcd\n")


def test_routes_match_whole_paths() -> None:
    admin = AdminApi(None, None, None, "").routes()  # type: ignore[arg-type]  # matching needs no store
    router = Router([*build_routes(HANDLERS, None), *admin])  # type: ignore[arg-type]
    found = router.match("/v2/team/app/tags/list")
    assert found is not None and found[0].name == "tags"
    assert router.match("/v2/team/app/tags/list\n") is None
    assert router.match("/v2/\n") is None
    # a newline inside the name reaches the name check (NAME_INVALID), not a 404
    found = router.match("/v2/team/app\n/tags/list")
    assert found is not None and found[1]["name"] == "team/app\n"
    found = router.match("/admin/v1/users")
    assert found is not None and found[0].name == "/admin/v1/users"
    assert router.match("/admin/v1/users\n") is None


def test_json_depth_is_bounded() -> None:
    assert jsontext.loads("[" * 64 + "]" * 64) is not None
    # brackets inside strings do not count, escaped quotes included
    assert jsontext.loads(json.dumps(["[" * 100 + '\\"{' * 100])) is not None
    for deep in ("[" * 65 + "]" * 65, '{"a":' * 2000 + "1" + "}" * 2000):
        with pytest.raises(jsontext.JSONTooDeep):
            jsontext.loads(deep)
