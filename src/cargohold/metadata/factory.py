"""Metadata databases by the scheme of their URL (``database.url``): ``sqlite:///path/to/file.db``,
``postgresql://USER[:PASSWORD]@HOST:PORT/DB`` (or ``postgres://``; any libpq URL parameter).

A PostgreSQL store imports psycopg only when such a URL is opened: client commands and
SQLite registries never load it.

A new database is a new entry in :data:`DATABASES`: how to open its registry store, how to
connect the other SQL stores to it (:class:`~.sql.SqlDatabase`), and how to migrate it (its
migrations live in ``migrations/<dialect>/``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .store import MetadataError, MetadataStore

if TYPE_CHECKING:
    from .access import AccessStore
    from .logins import LoginFailureStore
    from .schema import SchemaTarget
    from .sql import SqlDatabase
    from .sql_ui import SqlUiStore


@dataclass(frozen=True, slots=True)
class Database:
    #: the folder of its migrations: ``migrations/<dialect>/``
    dialect: str
    #: url -> an open store; refuses a schema that is not current
    open_store: Callable[[str], MetadataStore]
    #: (url, create) -> the database as :func:`~cargohold.metadata.schema.migrate` sees it
    open_schema: Callable[[str, bool], SchemaTarget]
    #: (url, what, connections) -> the (migrated) database as the SQL stores use it; ``what`` names it
    #: in errors, ``connections`` is how many a pool may hold where there is one
    connect: Callable[[str, str, int], SqlDatabase]


def _sqlite_store(url: str) -> MetadataStore:
    from .sqlite import SqliteMetadataStore

    return SqliteMetadataStore(url.removeprefix("sqlite://"))


def _sqlite_schema(url: str, create: bool) -> SchemaTarget:
    from .sqlite_schema import SqliteSchema

    return SqliteSchema(url.removeprefix("sqlite://"), create)


def _sqlite_connect(url: str, what: str, connections: int) -> SqlDatabase:
    from .sqlite_db import SqliteDatabase

    return SqliteDatabase(url.removeprefix("sqlite://"), what=what)


def _postgres_store(url: str) -> MetadataStore:
    from .postgres import PostgresMetadataStore

    return PostgresMetadataStore(url)


def _postgres_schema(url: str, create: bool) -> SchemaTarget:
    from .postgres_schema import PostgresSchema

    return PostgresSchema(url, create)


def _postgres_connect(url: str, what: str, connections: int) -> SqlDatabase:
    from .postgres_db import PostgresDatabase

    return PostgresDatabase(url, what=what, max_size=connections)


_POSTGRES = Database("postgres", _postgres_store, _postgres_schema, _postgres_connect)

#: URL scheme -> database
DATABASES: dict[str, Database] = {
    "sqlite": Database("sqlite", _sqlite_store, _sqlite_schema, _sqlite_connect),
    "postgresql": _POSTGRES,
    "postgres": _POSTGRES,
}


def database_for(url: str) -> Database:
    scheme, sep, _ = url.partition("://")
    database = DATABASES.get(scheme) if sep else None
    if database is None:
        raise MetadataError(f"unsupported metadata database URL {url!r}")
    return database


def shown(url: str) -> str:
    """The URL as printed (logs, ``migrate`` output): without a password."""
    scheme, sep, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.partition(':')[0]}:***@{location}"


def open_metadata_store(url: str) -> MetadataStore:
    return database_for(url).open_store(url)


def open_login_failures(url: str) -> LoginFailureStore:
    from .sql_logins import SqlLoginFailures

    # only failed logins write, and a check is one indexed read
    return SqlLoginFailures(database_for(url).connect(url, "login limits", 4))


def open_access_store(url: str) -> AccessStore:
    from .sql_access import SqlAccessStore

    # token requests and admin changes; a request holds a connection for a statement or a unit of work
    return SqlAccessStore(database_for(url).connect(url, "access store", 4))


def open_ui_store(url: str) -> SqlUiStore:
    from .sql_ui import SqlUiStore

    # the web UI's sessions and listings: a page is a few statements
    return SqlUiStore(database_for(url).connect(url, "web UI", 4))
