"""PostgreSQL metadata store: for registries whose replicas share one database (the SQL:
:mod:`.sql_registry`; connections and transactions: :mod:`.postgres_db`)."""

from __future__ import annotations

from typing import Final

from .migrations import require_current
from .postgres_db import PostgresDatabase
from .postgres_schema import applied_versions
from .sql_registry import SqlMetadataStore

#: connections per worker process; a request holds one for one statement (or one unit of work)
POOL_SIZE: Final = 10


class PostgresMetadataStore(SqlMetadataStore):
    def __init__(self, url: str):
        self.url = url
        require_current(applied_versions(url), "postgres")
        super().__init__(PostgresDatabase(url, what="metadata", max_size=POOL_SIZE))
