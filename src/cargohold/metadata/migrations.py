"""Versioned schema migrations, one folder per SQL dialect: ``migrations/<dialect>/NNNN_name.sql``.

A dialect is the folder's name (``sqlite``; a ``postgres`` folder is all another dialect
needs here). Versions are applied in order, once, by :func:`cargohold.metadata.schema.migrate`;
a store refuses a database whose applied versions differ from the ones it knows
(:func:`require_current`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from functools import cache
from importlib import resources

from .store import MetadataError


class SchemaError(MetadataError):
    """The database's schema is not the one this cargohold knows; the message is the one line to print."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


@cache
def load_migrations(dialect: str) -> tuple[Migration, ...]:
    folder = resources.files("cargohold.metadata") / "migrations" / dialect
    if not folder.is_dir():
        raise MetadataError(f"the {dialect} migrations are missing from the installed package ({folder})")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    if len({m.version for m in found}) != len(found):
        raise MetadataError(f"two {dialect} migrations share a version number ({folder})")
    return tuple(found)


def current_version(applied: Collection[int], dialect: str) -> int:
    """The last known version that is applied together with every version before it (0: none)."""
    current = 0
    for migration in load_migrations(dialect):
        if migration.version not in applied:
            break
        current = migration.version
    return current


def refuse_newer(applied: Collection[int], dialect: str) -> None:
    """A database migrated by a newer cargohold: its schema may mean what this code does not know."""
    known = load_migrations(dialect)
    latest = known[-1].version if known else 0
    unknown = set(applied) - {m.version for m in known}
    if unknown:
        raise SchemaError(
            f"database schema is at {max(applied)}, newer than this cargohold knows ({latest}): "
            "it was migrated by a newer cargohold; run that one (there are no downgrades)"
        )


def require_current(applied: Collection[int], dialect: str) -> None:
    """Refuse a database that is behind (``cargohold migrate`` brings it up) or ahead of this code."""
    refuse_newer(applied, dialect)
    known = load_migrations(dialect)
    if any(m.version not in applied for m in known):
        raise SchemaError(
            f"database schema is at {current_version(applied, dialect)}, this cargohold needs "
            f"{known[-1].version}: run `cargohold migrate`"
        )


def split_statements(sql: str) -> list[str]:
    """Split a migration into statements (no semicolons inside literals in our files)."""
    statements = []
    for part in sql.split(";"):
        lines = [line for line in part.splitlines() if not line.strip().startswith("--")]
        text = "\n".join(lines).strip()
        if text:
            statements.append(text)
    return statements
