"""Failed-login counters in the SQLite metadata database (table ``failed_logins``).

Only failures write; a check is one indexed read per key.
"""

from __future__ import annotations

from collections.abc import Sequence

from .sqlite_db import SqliteDatabase


class SqliteLoginFailures:
    def __init__(self, path: str):
        # the database must be migrated already: the migrations create the table
        self._db = SqliteDatabase(path, what="login limits")

    async def recent(self, key: str, since: float, limit: int) -> list[float]:
        rows = self._db.execute(
            "SELECT at FROM failed_logins WHERE key = ? AND at > ? ORDER BY at DESC LIMIT ?", (key, since, limit),
        ).fetchall()
        return [float(row[0]) for row in rows]

    async def record(self, keys: Sequence[str], at: float, forget_until: float) -> None:
        with self._db.transaction() as db:
            db.execute("DELETE FROM failed_logins WHERE at <= ?", (forget_until,))
            db.executemany("INSERT INTO failed_logins (key, at) VALUES (?, ?)", [(key, at) for key in keys])

    async def close(self) -> None:
        self._db.close()
