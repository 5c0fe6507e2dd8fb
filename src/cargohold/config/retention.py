"""The ``retention`` section: which tags and untagged manifests the retention job deletes, in Zot's schema.

A repository takes the first policy whose ``repositories`` globs match it (none: every repository); one
that matches no policy is left alone. Within a policy a tag is kept if any ``keep_tags`` rule keeps it; a
policy without ``keep_tags`` keeps every tag. A rule applies to the tags its ``patterns`` match (regular
expressions found anywhere in the tag, as Zot matches them: ``^v2[.]`` anchors one; none: every tag), and
keeps them all unless it names criteria (``pushed_within``, ``pulled_within``,
``most_recently_pushed_count``, ``most_recently_pulled_count``), then those that meet any of them.
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase

import msgspec

from .base import ConfigError, Section
from .notifications import parse_duration


def _seconds(where: str, value: float | str | None, *, allow_zero: bool = True) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise ConfigError(f"{where}: cannot use {value!r} (a duration such as 30m, 24h or 720h, or seconds)") from None
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ConfigError(f"{where}: cannot use {value!r} (must be {'at least' if allow_zero else 'more than'} 0)")
    return seconds


class KeepTags(Section, frozen=True):
    #: regular expressions, one of which must be found in the tag (``^v2[.]``, ``-prod$``); none: every tag
    patterns: list[str] = msgspec.field(default_factory=list)
    #: durations (Go's form, ``720h``, or seconds): pushed (the tag last set) or pulled (by GET) within it
    pushed_within: float | str | None = None
    pulled_within: float | str | None = None
    #: the N tags most recently pushed / pulled among those the patterns match
    most_recently_pushed_count: int | None = None
    most_recently_pulled_count: int | None = None

    def check(self, where: str) -> None:
        for index, pattern in enumerate(self.patterns):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"{where}.patterns[{index}]: cannot use {pattern!r} (not a regular expression:"
                                  f" {exc})") from None
        _seconds(f"{where}.pushed_within", self.pushed_within)
        _seconds(f"{where}.pulled_within", self.pulled_within)
        for key in ("most_recently_pushed_count", "most_recently_pulled_count"):
            count = getattr(self, key)
            if count is not None and count < 0:
                raise ConfigError(f"{where}.{key}: cannot use {count!r} (must not be negative)")

    @property
    def compiled(self) -> list[re.Pattern[str]]:
        return [re.compile(pattern) for pattern in self.patterns]

    @property
    def has_criteria(self) -> bool:
        return any(value is not None for value in (self.pushed_within, self.pulled_within,
                                                   self.most_recently_pushed_count, self.most_recently_pulled_count))

    def within(self, key: str) -> float | None:
        """``pushed_within`` or ``pulled_within`` in seconds."""
        return _seconds(key, getattr(self, key))


class RetentionPolicy(Section, frozen=True):
    #: globs over repository names (``*`` also matches ``/``, as the webhook and immutable tag globs); none: all
    repositories: list[str] = msgspec.field(default_factory=list)
    #: delete manifests no tag, kept index or kept subject holds, once older than ``retention.delay``
    delete_untagged: bool = True
    #: delete the referrers (signatures, SBOMs) of a deleted manifest with it; else they stay
    delete_referrers: bool = False
    keep_tags: list[KeepTags] = msgspec.field(default_factory=list)

    def covers(self, repository: str) -> bool:
        return not self.repositories or any(fnmatchcase(repository, glob) for glob in self.repositories)


class RetentionSection(Section, frozen=True):
    #: run the retention job in the server (once per deployment, every ``interval``)
    enabled: bool = False
    interval: float | str = "24h"
    #: the job logs what it would delete and deletes nothing (``cargohold retention`` deletes unless --dry-run)
    dry_run: bool = False
    #: untagged manifests and referrers pushed more recently than this stay (a push in progress, an index
    #: whose children are pushed first)
    delay: float | str = "24h"
    policies: list[RetentionPolicy] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        _seconds("retention.interval", self.interval, allow_zero=False)
        _seconds("retention.delay", self.delay)
        for number, policy in enumerate(self.policies):
            for index, glob in enumerate(policy.repositories):
                if not glob:
                    raise ConfigError(f"retention.policies[{number}].repositories[{index}]: empty")
            for index, rule in enumerate(policy.keep_tags):
                rule.check(f"retention.policies[{number}].keep_tags[{index}]")
        if self.enabled and not self.policies:
            raise ConfigError("retention.enabled: true, but retention.policies is empty (nothing to apply)")

    @property
    def interval_seconds(self) -> float:
        found = _seconds("retention.interval", self.interval)
        assert found is not None
        return found

    @property
    def delay_seconds(self) -> float:
        found = _seconds("retention.delay", self.delay)
        assert found is not None
        return found

    def policy_for(self, repository: str) -> RetentionPolicy | None:
        """The first policy that covers ``repository``; None: retention leaves it alone."""
        return next((policy for policy in self.policies if policy.covers(repository)), None)
