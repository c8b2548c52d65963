"""Hand-written SQL on a session's own connection and transaction, for the webhook hot path.

A payment webhook runs about ten small statements. Through SQLAlchemy each one costs
0.2-0.5 ms of Python (statement construction, cache keys, execution context, ORM result
loading) against 20-30 us of work in SQLite, and that Python cost capped webhook throughput.
The functions on the hot path (claiming an event, settling an order, granting access) use
this thin layer instead: SQL text written once, run directly on the driver.

- SQLite (the in-process inline connection, storage/sqlite_inline.py): straight on the
  `sqlite3` connection. Its implicit BEGIN before the first write puts these statements in
  the same transaction as everything else the session does.
- PostgreSQL: through SQLAlchemy's `exec_driver_sql` on the session's connection, which
  keeps asyncpg's transaction handling and prepared-statement cache, and skips compilation.

The SQL uses `?` placeholders (rewritten to `$1..$n` for asyncpg) and only syntax both
databases share (INSERT ... ON CONFLICT DO NOTHING RETURNING). `lock` is " FOR UPDATE" on
PostgreSQL and "" on SQLite, whose single writer serialises transactions anyway.

Values cross in the forms SQLAlchemy's column types use, so rows written here and rows
written through the ORM are indistinguishable: UTC datetimes (SQLite: naive UTC text with
microseconds), JSON as text, booleans as 0/1 on SQLite.
"""
from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from storage.sqlite_inline import InlineConnection

_PLACEHOLDER = re.compile(r"\?")
_DOLLAR_CACHE: dict[str, str] = {}


def _dollar(sql: str) -> str:
    """`?` placeholders as asyncpg's `$1..$n` (computed once per statement text)."""
    out = _DOLLAR_CACHE.get(sql)
    if out is None:
        counter = iter(range(1, 10_000))
        out = _DOLLAR_CACHE[sql] = _PLACEHOLDER.sub(lambda _m: f"${next(counter)}", sql)
    return out


class Sql:
    """The statements of one transaction. Get one with `await Sql.of(session)`."""

    lock = ""          # row locks for the transaction
    skip_locked = ""   # row locks that skip rows another transaction holds (work queues)
    dialect = ""

    @staticmethod
    async def of(session: AsyncSession) -> Sql:
        """The Sql of the session's current transaction: built once per transaction (the
        hot path asks for it at every step), after pending ORM changes are flushed so these
        statements see them."""
        sync = session.sync_session
        if sync.new or sync.dirty or sync.deleted:
            await session.flush()
        txn = sync.get_transaction()
        cached = sync.info.get("storage.sql")
        if txn is not None and cached is not None and cached[0] is txn:
            return cached[1]  # type: ignore[no-any-return]
        conn = await session.connection()
        sql: Sql = DriverSql(conn)
        if conn.dialect.name == "sqlite":
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            if isinstance(driver, InlineConnection):
                sql = SqliteSql(driver.sqlite)
        sync.info["storage.sql"] = (sync.get_transaction(), sql)
        return sql

    @staticmethod
    def marks(n: int) -> str:
        """`n` placeholders for an IN list."""
        return ", ".join("?" * n)

    # -- values in and out ---------------------------------------------------------------

    def ts(self, value: datetime | None) -> Any:
        """A datetime as the column stores it."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def dt(self, value: Any) -> datetime | None:
        """A stored datetime back as an aware UTC datetime."""
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @staticmethod
    def json(value: Any) -> str:
        return json.dumps(value)

    @staticmethod
    def load_json(value: Any) -> Any:
        """A JSON column's value (asyncpg decodes it already; SQLite gives the text)."""
        return json.loads(value) if isinstance(value, (str, bytes)) else value

    # -- statements ----------------------------------------------------------------------

    async def one(self, sql: str, params: Sequence[Any] = ()) -> Any | None:
        """The first row (a tuple), or None."""
        raise NotImplementedError

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        raise NotImplementedError

    async def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute; the number of rows changed."""
        raise NotImplementedError

    async def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError


class SqliteSql(Sql):
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def ts(self, value: datetime | None) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        # SQLAlchemy's SQLite DateTime storage format: always with microseconds.
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    async def one(self, sql: str, params: Sequence[Any] = ()) -> Any | None:
        rows = self._conn.execute(sql, params).fetchall()  # drained: RETURNING completes
        return rows[0] if rows else None

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._conn.execute(sql, params).fetchall()

    async def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    async def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)


class DriverSql(Sql):
    dialect = "postgresql"
    lock = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        if conn.dialect.name != "postgresql":
            self.lock = self.skip_locked = ""
            self.dialect = conn.dialect.name
        self._numeric = conn.dialect.paramstyle == "numeric_dollar"

    def _sql(self, sql: str) -> str:
        return _dollar(sql) if self._numeric else sql

    async def one(self, sql: str, params: Sequence[Any] = ()) -> Any | None:
        return (await self._conn.exec_driver_sql(self._sql(sql), tuple(params))).first()

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list((await self._conn.exec_driver_sql(self._sql(sql), tuple(params))).all())

    async def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        result = await self._conn.exec_driver_sql(self._sql(sql), tuple(params))
        return int(result.rowcount)

    async def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            await self._conn.exec_driver_sql(self._sql(sql), [tuple(r) for r in rows])
