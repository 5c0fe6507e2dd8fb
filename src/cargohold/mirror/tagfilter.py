"""Which tags a mirror job copies: a regular expression, or a semver range as npm and Cargo write them.

A filter that parses as a range is one (``>=1.2 <2``, ``^1.4``, ``~1.4.2``, ``1.x``, ``>=1 <2 || ^3``); any
other is a regular expression that must match the whole tag. ``regex:`` or ``semver:`` in front settles a
filter that could be either (``1.2`` is the range 1.2.x; ``regex:1.2`` the expression). Under a range, tags
are versions with an optional ``v`` (``v1.4.2``, ``1.4``: missing parts are 0); other tags never match, and
a pre-release (``2.0.0-rc.1``) matches only a comparator that names a pre-release of the same version
(npm's rule, so ``^1.4`` never picks up a release candidate).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

_PART: Final = r"(0|[1-9]\d*|[xX*])"
_VERSION: Final = re.compile(
    rf"^v?{_PART}(?:\.{_PART})?(?:\.{_PART})?(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]+)?$")
_COMPARATOR: Final = re.compile(r"^(\^|~|>=|<=|>|<|=)?(.+)$")

Version = tuple[int, int, int, tuple[int | str, ...]]


class TagFilterError(ValueError):
    """Neither a regular expression nor a range."""


def _prerelease(text: str | None) -> tuple[int | str, ...]:
    return tuple(int(p) if p.isdigit() else p for p in text.split(".")) if text else ()


def _key(version: Version) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
    """Semver precedence: a pre-release sorts before its release; numeric identifiers before others."""
    major, minor, patch, pre = version
    return (major, minor, patch, 0 if pre else 1,
            tuple((0, p) if isinstance(p, int) else (1, p) for p in pre))


def parse_version(tag: str) -> Version | None:
    """A tag as a version (``v1.4``, ``1.4.2-rc.1``), None when it is not one or has a wildcard."""
    match = _VERSION.match(tag)
    if match is None or any(part and not part.isdigit() for part in match.groups()[:3]):
        return None
    return (int(match[1]), int(match[2] or 0), int(match[3] or 0), _prerelease(match[4]))


Test = Callable[[Version], bool]


def _compare(op: str, bound: Version) -> Test:
    key = _key(bound)
    return {
        ">=": lambda v: _key(v) >= key, ">": lambda v: _key(v) > key,
        "<=": lambda v: _key(v) <= key, "<": lambda v: _key(v) < key, "=": lambda v: _key(v) == key,
    }[op]


def _comparator(text: str) -> tuple[list[Test], Version | None]:
    """The tests one comparator stands for, and the version it names when that is a pre-release."""
    found = _COMPARATOR.match(text)
    version = _VERSION.match(found[2]) if found else None
    if found is None or version is None:
        raise TagFilterError(f"{text!r} is not a comparator")
    op = found[1] or ""
    parts = [None if p is None or not p.isdigit() else int(p) for p in version.groups()[:3]]
    given = 0
    while given < 3 and parts[given] is not None:
        given += 1
    if any(p is not None for p in parts[given:]):
        raise TagFilterError(f"{text!r}: nothing may follow a wildcard")
    pre = _prerelease(version[4]) if given == 3 else ()
    major, minor, patch = (p or 0 for p in parts)
    low: Version = (major, minor, patch, pre)
    # the version after the last given part: where an x-range, a caret or a tilde ends
    if given == 0:
        return ([] if op in ("", "=", ">=", "<=", "^", "~") else [lambda v: False]), None
    upper_at = {"^": next((i for i, p in enumerate((major, minor, patch)) if p), given - 1) if given > 1
                else 0, "~": min(given - 1, 1)}.get(op, given - 1)
    if op == "^" and given > 1:
        upper_at = min(upper_at, given - 1)
    bump = [major, minor, patch]
    bump[upper_at] += 1
    for i in range(upper_at + 1, 3):
        bump[i] = 0
    high: Version = (bump[0], bump[1], bump[2], (0,))  # below every pre-release of the next version
    named = low if pre else None
    if op in ("^", "~") or (op in ("", "=") and given < 3):
        return [_compare(">=", low), _compare("<", high)], named
    if op in ("", "="):
        return [_compare("=", low)], named
    if given < 3:  # >1.2 means >=1.3.0; <=1.2 means <1.3.0
        if op == ">":
            return [_compare(">=", high)], named
        if op == "<=":
            return [_compare("<", high)], named
    return [_compare(op, low)], named


@dataclass(frozen=True, slots=True)
class TagFilter:
    """A parsed filter; ``matches(tag)`` says whether a job copies the tag."""

    text: str
    kind: str  # "all", "regex" or "semver"
    _regex: re.Pattern[str] | None = None
    _ranges: tuple[tuple[tuple[Test, ...], tuple[Version, ...]], ...] = ()

    @classmethod
    def parse(cls, text: str) -> TagFilter:
        text = text.strip()
        if not text:
            return cls(text, "all")
        if text.startswith("regex:"):
            return cls._as_regex(text, text.removeprefix("regex:"))
        if text.startswith("semver:"):
            return cls._as_range(text, text.removeprefix("semver:"))
        try:
            return cls._as_range(text, text)
        except TagFilterError:
            return cls._as_regex(text, text)

    @classmethod
    def _as_regex(cls, text: str, pattern: str) -> TagFilter:
        try:
            return cls(text, "regex", _regex=re.compile(pattern))
        except re.error as exc:
            raise TagFilterError(f"not a regular expression ({exc}) nor a semver range") from None

    @classmethod
    def _as_range(cls, text: str, ranges: str) -> TagFilter:
        alternatives = []
        for alternative in ranges.split("||"):
            words = alternative.split()
            if not words:
                raise TagFilterError("an empty alternative in a range")
            tests: list[Test] = []
            named: list[Version] = []
            for word in words:
                more, version = _comparator(word)
                tests += more
                named += [version] if version is not None else []
            alternatives.append((tuple(tests), tuple(named)))
        return cls(text, "semver", _ranges=tuple(alternatives))

    def matches(self, tag: str) -> bool:
        if self.kind == "all":
            return True
        if self._regex is not None:
            return self._regex.fullmatch(tag) is not None
        version = parse_version(tag)
        if version is None:
            return False
        for tests, named in self._ranges:
            if version[3] and not any(n[:3] == version[:3] for n in named):
                continue
            if all(test(version) for test in tests):
                return True
        return False
