"""Immutable tag rules: a tag whose repository and name match a rule is never moved nor deleted.

A rule is a pair of glob patterns, matched as the webhook ``repositories`` globs are
(:func:`fnmatch.fnmatchcase`: case-sensitive, ``*`` also matches ``/``, ``?`` one character,
``[...]`` a set): ``prod/*`` and ``v*`` make every ``v...`` tag of every repository under
``prod/`` immutable. Pushing the digest a protected tag already names succeeds (a retried push);
moving it to another digest, deleting it, or deleting the manifest it names is DENIED (403) with a
message that names the rule. Rules are added and lifted by administrators (audited), never bypassed.

Exception tree (answered by the admin API as the access model's are)::

    AccessModelError
    ├── ImmutableRuleInvalid   a pattern breaks the grammar below
    ├── ImmutableRuleExists    a rule with the same two patterns exists
    └── ImmutableRuleUnknown   no rule of that id
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Final

from .access_model import AccessModelError, check_account_name

#: the characters of repository names and of tags, and the glob's own (``[!...]`` negates a set)
_REPOSITORY_PATTERN: Final = re.compile(r"[a-z0-9._/\-*?\[\]!]+")
_TAG_PATTERN: Final = re.compile(r"[A-Za-z0-9._\-*?\[\]!]+")
PATTERN_MAX_LENGTH: Final = 255
_GLOB: Final = re.compile(r"[*?\[]")


class ImmutableRuleInvalid(AccessModelError):
    """A rule's pattern is not a glob over repository names or tags."""


class ImmutableRuleExists(AccessModelError):
    """A rule with the same repository and tag patterns exists already."""


class ImmutableRuleUnknown(AccessModelError):
    """No rule of that id."""


@dataclass(frozen=True, slots=True)
class ImmutableRule:
    id: int
    #: glob over repository names
    repository: str
    #: glob over tags
    tag: str
    #: who added it (an account, or the operating system's user of the admin CLI)
    created_by: str | None
    created_at: int

    def matches(self, repository: str, tag: str) -> bool:
        return fnmatchcase(repository, self.repository) and fnmatchcase(tag, self.tag)

    def covers_repository(self, repository: str) -> bool:
        """Whether some tag of ``repository`` may match."""
        return fnmatchcase(repository, self.repository)

    def __str__(self) -> str:
        return f"immutable tag rule {self.id} (repository {self.repository!r}, tag {self.tag!r})"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "repository": self.repository, "tag": self.tag, "created_by": self.created_by,
                "created_at": self.created_at}


def _check(kind: str, pattern: str, grammar: re.Pattern[str], characters: str) -> str:
    if not pattern or len(pattern) > PATTERN_MAX_LENGTH or not grammar.fullmatch(pattern):
        raise ImmutableRuleInvalid(
            f"{kind} pattern {pattern!r} is not a glob over {kind} names ({characters} with * ? [...], "
            f"1 to {PATTERN_MAX_LENGTH} characters)"
        )
    depth = 0
    for char in pattern:  # an unclosed or nested set would silently match the characters themselves
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if depth not in (0, 1):
            break
    if depth != 0:
        raise ImmutableRuleInvalid(f"{kind} pattern {pattern!r} has an unbalanced [ ]")
    return pattern


def check_rule_patterns(repository: str, tag: str) -> tuple[str, str]:
    """Both patterns, if they are globs that can match repository names and tags."""
    return (
        _check("repository", repository, _REPOSITORY_PATTERN, "lower-case letters, digits, . _ - /"),
        _check("tag", tag, _TAG_PATTERN, "letters, digits, . _ -"),
    )


def rule_namespace(repository_pattern: str) -> str | None:
    """The namespace every repository the pattern matches lies in (``acme/*`` -> ``acme``), if there is one."""
    first, slash, _ = repository_pattern.partition("/")
    if not slash or _GLOB.search(first):
        return None
    try:
        return check_account_name(first)
    except AccessModelError:
        return None


def first_match(rules: list[ImmutableRule], repository: str, tag: str) -> ImmutableRule | None:
    """The oldest rule that makes ``tag`` of ``repository`` immutable."""
    return next((rule for rule in rules if rule.matches(repository, tag)), None)
