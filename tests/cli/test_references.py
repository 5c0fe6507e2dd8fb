"""What users type as image references: a registry alone, a URL, capitals; each refused with a clear line."""

from __future__ import annotations

import pytest

from cargohold.cli.main import main
from cargohold.reference import Reference, ReferenceError


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("127.0.0.1:5000", "names a registry but no repository: write 127.0.0.1:5000/REPOSITORY[:TAG]"),
        ("localhost:5000", "names a registry but no repository"),
        ("registry.example.com", "names a registry but no repository"),
        ("127.0.0.1:5000/", "names a registry but no repository"),
        ("localhost@sha256:" + "a" * 64, "names a registry but no repository"),
        ("http://127.0.0.1:5000/team/app", "no http:// prefix; write '127.0.0.1:5000/team/app'"),
        ("https://ghcr.io/team/app:1.0", "no https:// prefix; write 'ghcr.io/team/app:1.0'"),
        ("127.0.0.1:5000/Team/App:1.0", "invalid repository name 'Team/App' (repository names are lowercase)"),
    ],
)
def test_refused_with_the_reason(text: str, says: str) -> None:
    with pytest.raises(ReferenceError) as caught:
        Reference.parse(text)
    assert says in str(caught.value)


def test_what_still_parses() -> None:
    assert Reference.parse("alpine") == Reference("docker.io", "library/alpine", "latest")
    assert Reference.parse("ubuntu:22.04") == Reference("docker.io", "library/ubuntu", "22.04")
    assert Reference.parse("localhost:5000/app") == Reference("localhost:5000", "app", "latest")
    assert Reference.parse("127.0.0.1:5000/team/app:1.0").registry == "127.0.0.1:5000"
    assert Reference.parse("team/app").registry == "docker.io"


def test_inspect_a_registry_alone(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "127.0.0.1:5000"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("cargohold: error: '127.0.0.1:5000' names a registry but no repository")
    assert main(["inspect", "--json", "http://127.0.0.1:5000/team/app"]) == 1
    assert "no http:// prefix" in capsys.readouterr().err
