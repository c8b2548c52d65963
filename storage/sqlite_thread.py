"""SQLite off the event loop: one connection, owned by a thread of its own.

SQLite work is fast (tens of microseconds per indexed statement), but it can wait: up to the
busy timeout while another process (`gatepass members import`, a backup) holds the write
lock, and for the disk on every durable commit. None of that may happen on the event loop,
which also serves /healthz, /metrics, Telegram polling and every other request.

So the process's one SQLite connection lives on a thread that runs an asyncio loop of its
own, and SQLAlchemy reaches it in two ways:

- Sessions opened on the main loop (`Database.session()`/`.transaction()`, used by handlers
  and sweeps) go through `ThreadConnection`, an aiosqlite-shaped adapter: each statement is
  one hop to the thread and back (execute and fetch in one go), like aiosqlite.
- Units of work (`Database.unit(fn)`, the webhook and outbox hot paths) run WHOLE on the
  thread's loop: `GroupCommit` takes every unit waiting, runs them in one BEGIN IMMEDIATE
  transaction, each in a SAVEPOINT of its own (one that fails is rolled back alone), and
  answers each waiter only after the shared COMMIT: one hop and one disk sync for a batch,
  instead of a hop per statement and a sync per transaction. (Plain aiosqlite hands every
  statement to its thread and back, and each hop waits an event-loop iteration under load;
  that capped webhook throughput at ~100 events/s.)

Both ways use the same physical connection, and never at the same time: a batch runs only
while the committer holds the main engine's single pooled connection, exactly as a session
does. The connection is in autocommit mode at the driver and every transaction starts with
an explicit BEGIN IMMEDIATE (storage/db.py): SAVEPOINTs then work, and a transaction that
would have to upgrade a read lock never fails with SQLITE_BUSY halfway.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from storage.fastexec import Executor, UnitSession

log = logging.getLogger(__name__)
T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000
# A batch this large still commits in a few milliseconds; a bound keeps one batch from
# holding the connection (and the waiters of its first units) for long.
MAX_BATCH = 256


class SqliteThread:
    """A thread running its own asyncio loop, owning one sqlite3 connection."""

    def __init__(self, path: str, *, synchronous: str = "FULL") -> None:
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self.thread = threading.Thread(target=self._main, name="gatepass-sqlite", daemon=True)
        self.thread.start()
        self._started.wait()
        self.conn: sqlite3.Connection = self.submit(self._connect(path, synchronous)).result()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    @staticmethod
    async def _connect(path: str, synchronous: str) -> sqlite3.Connection:
        # isolation_level=None: the driver never opens transactions by itself; storage/db.py
        # emits BEGIN IMMEDIATE, so SAVEPOINT works and the lock is taken up front.
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        # FULL: in WAL mode every commit syncs the log, so a commit that returned survives a
        # power cut; group commit shares that sync among a batch of transactions.
        conn.execute(f"PRAGMA synchronous={synchronous}")
        return conn

    def on_thread(self) -> bool:
        return threading.get_ident() == self.thread.ident

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run a coroutine on the thread's loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run a plain function on the thread; a future of the CALLER's loop for its result.
        Lighter than `submit` (no task on either side): this is every statement's hop."""
        caller = asyncio.get_running_loop()
        fut: asyncio.Future[T] = caller.create_future()

        def run() -> None:
            try:
                result = fn(*args)
            except BaseException as e:  # noqa: BLE001 - handed to the caller as is
                caller.call_soon_threadsafe(_fail, fut, e)
            else:
                caller.call_soon_threadsafe(_succeed, fut, result)

        self.loop.call_soon_threadsafe(run)
        return fut

    async def close(self) -> None:
        """Close the connection and stop the thread (waited for off the caller's loop)."""
        if not self.thread.is_alive():
            return

        async def shut() -> None:
            self.conn.close()

        await asyncio.wrap_future(self.submit(shut()))
        self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self.thread.join, 10)


async def finish(fut: asyncio.Future[T]) -> T:
    """Await work handed to the thread; if the caller is cancelled meanwhile, the work runs
    anyway, so wait for it to end before the cancellation goes on: whatever the caller does
    next on the connection (the rollback of its session) must come after it, not race it."""
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        if not fut.done():
            await asyncio.wait([fut])
        raise


def _succeed(fut: asyncio.Future[Any], result: Any) -> None:
    if not fut.done():
        fut.set_result(result)


def _fail(fut: asyncio.Future[Any], error: BaseException) -> None:
    if not fut.done():
        fut.set_exception(error)


# -- the adapter SQLAlchemy's aiosqlite dialect drives (through `async_creator`) ----------


def _execute(
    conn: sqlite3.Connection, sql: str, params: Any, many: bool
) -> tuple[list[Any], Any, int, int | None]:
    """One statement, its rows fetched at once (one hop, and RETURNING completes)."""
    cur = conn.executemany(sql, params) if many else conn.execute(sql, params)
    try:
        rows = cur.fetchall() if cur.description else []
        return rows, cur.description, cur.rowcount, cur.lastrowid
    finally:
        cur.close()


class ThreadCursor:
    """The part of aiosqlite.Cursor that SQLAlchemy uses; rows arrive with the execute."""

    arraysize = 1

    def __init__(self, conn: ThreadConnection) -> None:
        self._conn = conn
        self._rows: list[Any] = []
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None

    async def __aenter__(self) -> ThreadCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def execute(self, sql: str, parameters: Any = ()) -> ThreadCursor:
        self._rows, self.description, self.rowcount, self.lastrowid = await self._conn.run(
            _execute, self._conn.sqlite, sql, parameters if parameters is not None else (), False
        )
        return self

    async def executemany(self, sql: str, seq: Sequence[Any]) -> ThreadCursor:
        self._rows, self.description, self.rowcount, self.lastrowid = await self._conn.run(
            _execute, self._conn.sqlite, sql, list(seq), True
        )
        return self

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        n = size if size is not None else self.arraysize
        out, self._rows = self._rows[:n], self._rows[n:]
        return out

    async def fetchall(self) -> list[Any]:
        out, self._rows = self._rows, []
        return out

    async def close(self) -> None:
        self._rows = []


class ThreadConnection:
    """The part of aiosqlite.Connection that SQLAlchemy uses, over the thread's connection:
    a call from the thread itself (a unit of work) runs at once, any other is one hop."""

    def __init__(self, owner: SqliteThread) -> None:
        self._owner = owner
        self.sqlite = owner.conn
        self._connection: sqlite3.Connection | None = owner.conn  # SQLAlchemy checks it

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._owner.on_thread():
            return fn(*args)
        return await finish(self._owner.call(fn, *args))

    def cursor(self) -> ThreadCursor:
        return ThreadCursor(self)

    async def execute(self, sql: str, parameters: Any = ()) -> ThreadCursor:
        return await self.cursor().execute(sql, parameters)

    async def commit(self) -> None:
        if self.sqlite.in_transaction:  # the pool's reset on return: no hop for nothing
            await self.run(self.sqlite.commit)

    async def rollback(self) -> None:
        if self.sqlite.in_transaction:
            await self.run(self.sqlite.rollback)

    async def close(self) -> None:
        """The thread owns the connection (SqliteThread.close); a pool only lets go of it."""
        self.stop()

    def stop(self) -> None:
        """Let go of the connection: what its transaction left open is rolled back before
        anything queued after this (SQLAlchemy terminates a connection whose user was
        cancelled mid-statement, and the next checkout gets the same sqlite3 connection)."""
        if self._connection is None:
            return
        self._connection = None
        conn = self.sqlite

        def rollback() -> None:
            if conn.in_transaction:
                conn.rollback()

        if self._owner.on_thread():
            rollback()
        elif self._owner.thread.is_alive():
            self._owner.loop.call_soon_threadsafe(rollback)

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        await self.run(lambda: self.sqlite.create_function(*args, **kwargs))

    @property
    def isolation_level(self) -> str | None:
        return self.sqlite.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        raise NotImplementedError("isolation is fixed: BEGIN IMMEDIATE, see storage/db.py")


# -- group commit --------------------------------------------------------------------------

Work = Callable[[AsyncSession], Awaitable[T]]


@dataclass
class _Unit(Generic[T]):
    work: Work[T]
    waiter: asyncio.Future[T]
    ok: bool = False
    result: Any = None
    error: BaseException | None = field(default=None)


class GroupCommit:
    """Units of work from the main loop, run in batches on the SQLite thread: one
    transaction and one COMMIT (one sync) per batch, a SAVEPOINT per unit."""

    def __init__(
        self,
        owner: SqliteThread,
        main_engine: AsyncEngine,
        thread_engine: Callable[[], AsyncEngine],
    ) -> None:
        self._owner = owner
        self._main = main_engine
        self._thread_engine = thread_engine  # built on the thread, on first use
        self._queue: list[_Unit[Any]] = []
        self._executor: Executor | None = None  # used on the thread only
        self._drainer: asyncio.Task[None] | None = None
        self.batches = 0
        self.units = 0

    async def run(self, work: Work[T]) -> T:
        unit: _Unit[T] = _Unit(work, asyncio.get_running_loop().create_future())
        self._queue.append(unit)
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await unit.waiter

    async def _drain(self) -> None:
        while self._queue:
            batch = [u for u in self._queue[:MAX_BATCH] if not u.waiter.done()]
            del self._queue[:MAX_BATCH]
            if not batch:
                continue
            try:
                # The one connection, held as any session holds it: nothing else uses it
                # while the batch runs on the thread.
                async with self._main.connect():
                    await finish(asyncio.wrap_future(self._owner.submit(self._run_batch(batch))))
            except BaseException as e:  # the batch did not commit: all fail
                for u in batch:
                    _fail(u.waiter, e)
                if isinstance(e, asyncio.CancelledError):
                    for u in self._queue:
                        _fail(u.waiter, e)
                    self._queue.clear()
                    raise
                continue
            self.batches += 1
            self.units += len(batch)
            for u in batch:
                if u.ok:
                    _succeed(u.waiter, u.result)
                else:
                    assert u.error is not None
                    _fail(u.waiter, u.error)

    async def _run_batch(self, batch: list[_Unit[Any]]) -> None:
        """On the thread: BEGIN IMMEDIATE; each unit in its SAVEPOINT; COMMIT."""
        async with self._thread_engine().connect() as conn:
            await conn.begin()
            for u in batch:
                await self._run_unit(conn, u)
            await conn.commit()

    async def _run_unit(self, conn: AsyncConnection, u: _Unit[Any]) -> None:
        if self._executor is None:
            self._executor = Executor(self._owner.conn, conn.dialect)
        ex = self._executor
        session = UnitSession(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        session.executor = ex
        ex.begin_unit()  # SAVEPOINT
        try:
            u.result = await u.work(session)
            if session.has_work():
                await session.commit()  # flush; its own inner savepoint released
            ex.release_unit()  # RELEASE SAVEPOINT
            u.ok = True
        except Exception as e:  # noqa: BLE001 - this unit alone is rolled back
            u.error = e
            if session.has_work():
                await session.rollback()
            ex.rollback_unit()  # ROLLBACK TO SAVEPOINT (and RELEASE it)
        finally:
            await session.close()
