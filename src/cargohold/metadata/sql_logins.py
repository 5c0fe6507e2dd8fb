"""Failed-login counters in the metadata database (table ``failed_logins``), shared by every worker and replica.

Only failures write; a check is one indexed read per key.
"""

from __future__ import annotations

from collections.abc import Sequence

from .sql import SqlDatabase


class SqlLoginFailures:
    def __init__(self, db: SqlDatabase):
        # the database must be migrated already: the migrations create the table
        self._db = db

    async def recent(self, key: str, since: float, limit: int) -> list[float]:
        rows = await self._db.fetchall(
            "SELECT at FROM failed_logins WHERE key = ? AND at > ? ORDER BY at DESC LIMIT ?", (key, since, limit),
        )
        return [float(row[0]) for row in rows]

    async def record(self, keys: Sequence[str], at: float, forget_until: float) -> None:
        async with self._db.atomic():
            await self._db.write("DELETE FROM failed_logins WHERE at <= ?", (forget_until,))
            await self._db.write_many("INSERT INTO failed_logins (key, at) VALUES (?, ?)", [(key, at) for key in keys])

    async def close(self) -> None:
        await self._db.aclose()
