"""Engine and session setup for SQLite (one connection on a thread of its own) and
PostgreSQL (asyncpg), and the rules every caller follows:

- Database work never runs on the event-loop thread. PostgreSQL through asyncpg never
  blocks; SQLite runs on its own thread (storage/sqlite_thread.py).
- Acknowledged means durable. SQLite: WAL with synchronous=FULL, each transaction starts
  with BEGIN IMMEDIATE, and the hot paths share commits (group commit, `unit`). PostgreSQL:
  its defaults (synchronous_commit=on): COMMIT returns once the WAL is flushed; units share
  commits there too (storage/pg_group.py).
- No task waits for a second connection while it holds one: with SQLite's one connection
  that waits forever, on PostgreSQL it deadlocks under load once the pool is exhausted.
  `session`, `transaction` and `unit` refuse to start inside a session of the same task
  that holds a connection (NestedConnectionError) rather than hang.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from sqlalchemy import event, literal, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from storage.fastexec import PgExecutor
from storage.pg_group import PgGroupCommit
from storage.sqlite_thread import GroupCommit, SqliteThread, ThreadConnection

T = TypeVar("T")


class NestedConnectionError(RuntimeError):
    """A task asked for a second database connection while holding one (a deadlock)."""


# The innermost session this task opened, per Database (see NestedConnectionError). The task
# is kept with it: a task created inside the session inherits the context variable, but it
# is a task of its own that may wait for the connection (its holder does not wait for it).
_OPEN: ContextVar[tuple[Database, AsyncSession, asyncio.Task[Any] | None] | None] = ContextVar(
    "gatepass_db_open", default=None
)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _begin_immediate(engine: AsyncEngine) -> None:
    """Every SQLite transaction takes the write lock at BEGIN (the driver runs in autocommit
    mode and opens none itself): SAVEPOINTs work, and a transaction never fails with
    SQLITE_BUSY when it first writes after reading; it waits for the lock up front, on the
    database thread, up to the busy timeout."""

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_engine(url: str, owner: SqliteThread) -> AsyncEngine:
    async def connect() -> ThreadConnection:
        return ThreadConnection(owner)

    # One connection: SQLite has one writer at a time anyway, and the pool's queue is a far
    # cheaper wait than "database is locked" retries between connections.
    engine = create_async_engine(
        url, pool_size=1, max_overflow=0, pool_timeout=60, async_creator=connect
    )
    _begin_immediate(engine)
    return engine


def make_engine(url: str, search_path: str | None = None) -> AsyncEngine:
    """A PostgreSQL engine (SQLite engines belong to their Database's thread)."""
    # search_path lets tests give each case a schema of its own on one PostgreSQL database.
    # application_name names our connections in pg_stat_activity (ops, and tests that look
    # for a connection left open).
    server_settings = {"application_name": "gatepass"}
    if search_path:
        server_settings["search_path"] = search_path
    connect_args = {"server_settings": server_settings}
    engine = create_async_engine(url, pool_size=10, max_overflow=10, connect_args=connect_args)
    _ping_when_idle(engine)
    return engine


# A connection back in use within this long was working a moment ago: no ping for it.
PING_AFTER_IDLE_SECONDS = 1.0


def _ping_when_idle(engine: AsyncEngine) -> None:
    """A connection checked out after sitting idle is pinged first, and replaced if the
    server dropped it (a restart, an idle timeout), as pool_pre_ping would; one that was in
    use a moment ago is not. asyncpg's pre-ping opens a transaction, sends `;` and rolls
    back: three round trips on every checkout, a quarter of a webhook's under load."""

    @event.listens_for(engine.sync_engine, "checkin")
    def _checkin(dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dbapi_conn.ping()
        except Exception as e:  # any failure: the pool connects afresh
            raise DisconnectionError(f"connection dropped while idle: {e}") from e


class Database:
    """Holds the engine and hands out sessions; one per process, passed around explicitly."""

    def __init__(self, url: str, search_path: str | None = None) -> None:
        self.url = url
        self._thread: SqliteThread | None = None
        self._group: GroupCommit | None = None
        if is_sqlite(url):
            self._path = make_url(url).database or ":memory:"
            self._thread = SqliteThread(self._path)
            self.engine = _sqlite_engine(url, self._thread)
            thread_engine: list[AsyncEngine] = []

            def on_thread() -> AsyncEngine:
                # The thread's own engine over the same connection, for units of work; it
                # is only ever used on the thread's loop, while the main engine's
                # connection is held for it (GroupCommit._drain).
                if not thread_engine:
                    assert self._thread is not None
                    thread_engine.append(_sqlite_engine(url, self._thread))
                return thread_engine[0]

            self._thread_engine = thread_engine
            self._group = GroupCommit(self._thread, self.engine, on_thread)
        else:
            self.engine = make_engine(url, search_path)
        self.sessionmaker = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False
        )
        # PostgreSQL units: group commit too (storage/pg_group.py), their Core statements
        # run by the executor.
        self._pg_group = (
            None
            if self._group
            else PgGroupCommit(self.engine, PgExecutor(self.engine.dialect), self._holding)
        )

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite(self.url)

    def _check_not_holding(self) -> None:
        held = _OPEN.get()
        if (
            held is not None
            and held[0] is self
            and held[2] is asyncio.current_task()
            and held[1].in_transaction()
        ):
            raise NestedConnectionError(
                "a second database connection was asked for while this task holds one "
                "(commit or close the open session first)"
            )

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        self._check_not_holding()
        async with self.sessionmaker() as s:
            token = _OPEN.set((self, s, asyncio.current_task()))
            try:
                yield s
            finally:
                _OPEN.reset(token)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        async with self.session() as s, s.begin():
            yield s

    async def unit(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run `work(session)` in a transaction of its own; its result once that is durably
        committed. `work` does database work only (it may run on the database thread, in a
        batch with others; it must not wait on anything of the caller's loop).

        SQLite: group commit (storage/sqlite_thread.py); PostgreSQL: group commit too
        (storage/pg_group.py), where `work` may run a second time, alone, after its batch
        was rolled back (so it keeps no state of its own between runs). An exception from
        `work` rolls back its own changes only, and is raised here."""
        self._check_not_holding()
        if self._group is not None:
            return await self._group.run(work)
        assert self._pg_group is not None
        return await self._pg_group.run(work)

    @asynccontextmanager
    async def _holding(self, s: AsyncSession) -> AsyncIterator[None]:
        """The current task holds `s`'s connection (see NestedConnectionError)."""
        token = _OPEN.set((self, s, asyncio.current_task()))
        try:
            yield
        finally:
            _OPEN.reset(token)

    async def ping(self) -> None:
        """Raise unless the database answers. SQLite: read on a connection of its own, so a
        write lock held elsewhere (another process, a batch waiting for it) does not make
        the answer wait; a WAL reader never waits for a writer."""
        if self._thread is not None:
            if self._path != ":memory:":  # (private to its connection: nothing to read)
                await asyncio.to_thread(_sqlite_ping, self._path)
            return
        async with self.engine.connect() as conn:
            await conn.execute(select(literal(1)))

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._thread is not None:
            for engine in self._thread_engine:
                await asyncio.wrap_future(self._thread.submit(engine.dispose()))
            await self._thread.close()


def _sqlite_ping(path: str) -> None:
    import sqlite3

    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from storage.models import Outbox, table

    engine = create_engine(
        "sqlite://", poolclass=NullPool, creator=lambda: sqlite3.connect(path, timeout=1)
    )
    with engine.connect() as conn:
        conn.execute(select(table(Outbox).c.id).limit(1)).all()
    engine.dispose()
