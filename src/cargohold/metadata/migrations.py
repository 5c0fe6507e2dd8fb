"""Versioned schema migrations: ``migrations/<dialect>/NNNN_name.sql``, applied in order once."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from .store import MetadataError


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(dialect: str) -> list[Migration]:
    folder = resources.files("cargohold.metadata") / "migrations" / dialect
    if not folder.is_dir():
        raise MetadataError(f"the {dialect} migrations are missing from the installed package ({folder})")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    return found


def split_statements(sql: str) -> list[str]:
    """Split a migration into statements (no semicolons inside literals in our files)."""
    statements = []
    for part in sql.split(";"):
        lines = [line for line in part.splitlines() if not line.strip().startswith("--")]
        text = "\n".join(lines).strip()
        if text:
            statements.append(text)
    return statements
