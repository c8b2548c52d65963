"""Engine and session setup for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""
from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

T = TypeVar("T")


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, search_path: str | None = None) -> AsyncEngine:
    if is_sqlite(url):
        # One connection: SQLite allows one writer at a time anyway, and queueing in the pool
        # is far cheaper than "database is locked" retries between connections.
        engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=60)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    # search_path lets tests give each case a schema of its own on one PostgreSQL database.
    # application_name names our connections in pg_stat_activity (ops, and tests that look
    # for a connection left open).
    server_settings = {"application_name": "gatepass"}
    if search_path:
        server_settings["search_path"] = search_path
    connect_args = {"server_settings": server_settings}
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True,
                               connect_args=connect_args)


class Database:
    """Holds the engine and hands out sessions; one per process, passed around explicitly."""

    def __init__(self, url: str, search_path: str | None = None) -> None:
        self.url = url
        self.engine = make_engine(url, search_path)
        self.sessionmaker = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False
        )

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite(self.url)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as s:
            yield s

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        async with self.sessionmaker() as s, s.begin():
            yield s

    async def unit(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run `work` in a transaction of its own; its result once that is committed."""
        async with self.transaction() as s:
            return await work(s)

    async def dispose(self) -> None:
        await self.engine.dispose()
