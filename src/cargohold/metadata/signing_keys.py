"""Private keys the registry generated for itself, kept in the metadata database (table ``signing_keys``).

Every replica of a deployment must sign with the same key, so a key that is not configured is
created once and stored here: each starting process offers a fresh key, the first one inserted
wins and every process reads back that one. Plain blocking connections: this runs once, while a
worker starts, before its event loop.
"""

from __future__ import annotations

import time
from contextlib import closing

from .factory import database_for
from .sqlite_db import SqliteDatabase

_INSERT = "INSERT INTO signing_keys (name, pem, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING"
_SELECT = "SELECT pem FROM signing_keys WHERE name = ?"


def keep_first_key(url: str, name: str, offered: str) -> str:
    """The PEM stored under ``name``; ``offered`` becomes it if there is none yet (the database must be migrated)."""
    found = _run(url, name, offered)
    assert found is not None  # inserted, or there already
    return found


def stored_key(url: str, name: str) -> str | None:
    """The PEM stored under ``name``, if any."""
    return _run(url, name, None)


def _run(url: str, name: str, offered: str | None) -> str | None:
    row: tuple[str] | None
    if database_for(url).dialect == "sqlite":
        db = SqliteDatabase(url.removeprefix("sqlite://"), what="signing keys")
        try:
            if offered is not None:
                db.execute(_INSERT, (name, offered, int(time.time())))
            row = db.execute(_SELECT, (name,)).fetchone()
        finally:
            db.close()
    else:
        from .postgres_db import connect, reported  # psycopg only for PostgreSQL

        with closing(connect(url, "signing keys")) as pg, reported("signing keys"):
            if offered is not None:
                pg.execute(_INSERT.replace("?", "%s"), (name, offered, int(time.time())))
            row = pg.execute(_SELECT.replace("?", "%s"), (name,)).fetchone()
    return None if row is None else row[0]
