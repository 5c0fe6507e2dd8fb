"""SQLite metadata store: the embedded default (the SQL: :mod:`.sql_registry`; the connection: :mod:`.sqlite_db`)."""

from __future__ import annotations

import os

from .migrations import require_current
from .sql_registry import SqlMetadataStore
from .sqlite_db import SqliteDatabase
from .sqlite_schema import applied_versions


class SqliteMetadataStore(SqlMetadataStore):
    def __init__(self, path: str):
        self.path = path
        if path != ":memory:" and not os.path.exists(path):  # refused without creating an empty file
            require_current((), "sqlite")
        db = SqliteDatabase(path, what="metadata")
        try:
            require_current(applied_versions(db), "sqlite")
        except BaseException:
            db.close()
            raise
        super().__init__(db)
