"""Mirror tag filters: a regular expression matching the whole tag, or a semver range (npm's rules)."""

from __future__ import annotations

import pytest

from cargohold.mirror.tagfilter import TagFilter, TagFilterError

TAGS = ["1.3.9", "1.4", "1.4.0", "v1.4.2", "1.4.10", "1.5.0", "1.9.9", "2.0.0-rc.1", "2.0.0", "2.1", "0.4.1",
        "0.5.0", "latest", "sha-abc", "1.4.2-rc.1"]


def matching(text: str) -> list[str]:
    found = TagFilter.parse(text)
    return [tag for tag in TAGS if found.matches(tag)]


@pytest.mark.parametrize(("text", "expected"), [
    ("^1.4", ["1.4", "1.4.0", "v1.4.2", "1.4.10", "1.5.0", "1.9.9"]),
    ("~1.4.2", ["v1.4.2", "1.4.10"]),
    ("~1.4", ["1.4", "1.4.0", "v1.4.2", "1.4.10"]),
    (">=1.2 <2", ["1.3.9", "1.4", "1.4.0", "v1.4.2", "1.4.10", "1.5.0", "1.9.9"]),
    (">1.4 <=2", ["1.5.0", "1.9.9", "2.0.0", "2.1"]),  # npm: <=2 is <3.0.0
    (">1.4 <=2.0.0", ["1.5.0", "1.9.9", "2.0.0"]),
    ("^0.4", ["0.4.1"]),
    ("1.x", ["1.3.9", "1.4", "1.4.0", "v1.4.2", "1.4.10", "1.5.0", "1.9.9"]),
    ("2.1 || ~1.5", ["1.5.0", "2.1"]),
    (">=2.0.0-rc.0", ["2.0.0-rc.1", "2.0.0", "2.1"]),
    ("1.4.2-rc.1", ["1.4.2-rc.1"]),
    ("semver:1.4.0", ["1.4", "1.4.0"]),
])
def test_semver_ranges(text: str, expected: list[str]) -> None:
    assert TagFilter.parse(text).kind == "semver"
    assert matching(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    (r"1\.4\..*", ["1.4.0", "1.4.10", "1.4.2-rc.1"]),
    ("latest|sha-.*", ["latest", "sha-abc"]),
    ("regex:1.4", ["1.4"]),
    ("^v1.*", ["v1.4.2"]),  # "^v1.*" reads as a range too: ^1.x, a version with a v ...
])
def test_regular_expressions(text: str, expected: list[str]) -> None:
    if text == "^v1.*":  # ... so it is one: a caret over 1.x matches every 1.y.z, with or without the v
        assert matching(text) == ["1.3.9", "1.4", "1.4.0", "v1.4.2", "1.4.10", "1.5.0", "1.9.9"]
        assert matching("regex:" + text) == expected
        return
    assert TagFilter.parse(text).kind == "regex"
    assert matching(text) == expected


def test_empty_matches_everything_and_bad_filters_are_refused() -> None:
    assert matching("") == TAGS
    for bad in ("(unclosed", "semver:>=banana", "semver:1.x.3", "semver:>=1 ||"):
        with pytest.raises(TagFilterError):
            TagFilter.parse(bad)
