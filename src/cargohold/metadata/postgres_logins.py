"""Failed-login counters in the PostgreSQL metadata database (table ``failed_logins``), shared by every replica."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from .postgres_db import PostgresDatabase

#: only failed logins write, and a check is one indexed read
POOL_SIZE: Final = 4


class PostgresLoginFailures:
    def __init__(self, url: str):
        # the database must be migrated already: the migrations create the table
        self._db = PostgresDatabase(url, what="login limits", max_size=POOL_SIZE)

    async def recent(self, key: str, since: float, limit: int) -> list[float]:
        rows = await self._db.fetchall(
            "SELECT at FROM failed_logins WHERE key = ? AND at > ? ORDER BY at DESC LIMIT ?", (key, since, limit),
        )
        return [float(row[0]) for row in rows]

    async def record(self, keys: Sequence[str], at: float, forget_until: float) -> None:
        async with self._db.atomic() as db:
            await db.execute("DELETE FROM failed_logins WHERE at <= %s", (forget_until,))
            if keys:
                async with db.cursor() as cursor:
                    await cursor.executemany("INSERT INTO failed_logins (key, at) VALUES (%s, %s)",
                                             [(key, at) for key in keys])

    async def close(self) -> None:
        await self._db.close()
