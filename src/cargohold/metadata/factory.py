"""Metadata databases by the scheme of their URL (``database.url``): ``sqlite:///path/to/file.db``,
``postgresql://USER[:PASSWORD]@HOST:PORT/DB`` (or ``postgres://``; any libpq URL parameter).

A PostgreSQL store imports psycopg only when such a URL is opened: client commands and
SQLite registries never load it.

A new database is a new entry in :data:`DATABASES`: how to open its store, and how to
migrate it (its migrations live in ``migrations/<dialect>/``).
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


@dataclass(frozen=True, slots=True)
class Database:
    #: the folder of its migrations: ``migrations/<dialect>/``
    dialect: str
    #: url -> an open store; refuses a schema that is not current
    open_store: Callable[[str], MetadataStore]
    #: (url, create) -> the database as :func:`~cargohold.metadata.schema.migrate` sees it
    open_schema: Callable[[str, bool], SchemaTarget]
    #: url -> the failed-login counters in that (migrated) database
    open_login_failures: Callable[[str], LoginFailureStore]
    #: url -> the access model (accounts, teams, grants, ...) in that (migrated) database
    open_access_store: Callable[[str], AccessStore]


def _sqlite_store(url: str) -> MetadataStore:
    from .sqlite import SqliteMetadataStore

    return SqliteMetadataStore(url.removeprefix("sqlite://"))


def _sqlite_schema(url: str, create: bool) -> SchemaTarget:
    from .sqlite_schema import SqliteSchema

    return SqliteSchema(url.removeprefix("sqlite://"), create)


def _sqlite_login_failures(url: str) -> LoginFailureStore:
    from .sql_logins import SqlLoginFailures
    from .sqlite_db import SqliteDatabase

    return SqlLoginFailures(SqliteDatabase(url.removeprefix("sqlite://"), what="login limits"))


def _sqlite_access_store(url: str) -> AccessStore:
    from .sql_access import SqlAccessStore
    from .sqlite_db import SqliteDatabase

    return SqlAccessStore(SqliteDatabase(url.removeprefix("sqlite://"), what="access store"))


def _postgres_store(url: str) -> MetadataStore:
    from .postgres import PostgresMetadataStore

    return PostgresMetadataStore(url)


def _postgres_schema(url: str, create: bool) -> SchemaTarget:
    from .postgres_schema import PostgresSchema

    return PostgresSchema(url, create)


def _postgres_login_failures(url: str) -> LoginFailureStore:
    from .postgres_db import PostgresDatabase
    from .sql_logins import SqlLoginFailures

    # only failed logins write, and a check is one indexed read
    return SqlLoginFailures(PostgresDatabase(url, what="login limits", max_size=4))


def _postgres_access_store(url: str) -> AccessStore:
    from .postgres_db import PostgresDatabase
    from .sql_access import SqlAccessStore

    # token requests and admin changes; a request holds one for a statement or a unit of work
    return SqlAccessStore(PostgresDatabase(url, what="access store", max_size=4))


_POSTGRES = Database("postgres", _postgres_store, _postgres_schema, _postgres_login_failures, _postgres_access_store)

#: URL scheme -> database
DATABASES: dict[str, Database] = {
    "sqlite": Database("sqlite", _sqlite_store, _sqlite_schema, _sqlite_login_failures, _sqlite_access_store),
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
    return database_for(url).open_login_failures(url)


def open_access_store(url: str) -> AccessStore:
    return database_for(url).open_access_store(url)
