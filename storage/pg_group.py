"""Group commit on PostgreSQL: units of work waiting together share one transaction.

A webhook is about a dozen short statements; on its own it also pays a BEGIN, a COMMIT and
a WAL flush, and the service and the server share two cores, so every round trip counts.
So units (Database.unit) queue here, and a few committers (one connection each) take every
unit waiting and run them one after the other in ONE transaction, then answer each only
after that COMMIT returned (acknowledged still means durable).

Optimistic, without a SAVEPOINT per unit (that would cost the two round trips we save): if
any unit of a batch fails, or the COMMIT does (a deadlock with another batch, a lost
connection), the batch is rolled back and each of its units runs again in a transaction of
its own, exactly as it would have without batching; a unit's error reaches only its caller.
A unit's work is database work only (Database.unit), so running it again after a rollback
is safe. A unit alone in the queue runs in a transaction of its own straight away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from storage.fastexec import PgExecutor, UnitSession

log = logging.getLogger(__name__)
T = TypeVar("T")
Work = Callable[[AsyncSession], Awaitable[T]]

# Batches running at once (a connection each): enough to keep both the service and the
# server busy while one batch waits for its round trip or its WAL flush, few enough that
# units queue up behind them and batches form under load.
COMMITTERS = 3
# A bound on how long one batch holds its row locks (and its first units' answers).
MAX_BATCH = 64


@dataclass
class _Unit(Generic[T]):
    work: Work[T]
    waiter: asyncio.Future[T]
    result: Any = None
    error: BaseException | None = field(default=None)


class PgGroupCommit:
    """Units of work run in batches, one transaction (one COMMIT, one WAL flush) a batch."""

    def __init__(
        self,
        engine: AsyncEngine,
        executor: PgExecutor,
        holding: Callable[[AsyncSession], AbstractAsyncContextManager[None]],
    ) -> None:
        self._engine = engine
        self._executor = executor
        # Marks the committer task as holding a connection while a unit runs (a unit that
        # asks for another connection is refused, as Database.unit would refuse it).
        self._holding = holding
        self._queue: list[_Unit[Any]] = []
        self._committers = 0
        self._tasks: set[asyncio.Task[None]] = set()  # (the loop holds tasks weakly)
        self.batches = 0
        self.units = 0

    async def run(self, work: Work[T]) -> T:
        unit: _Unit[T] = _Unit(work, asyncio.get_running_loop().create_future())
        self._queue.append(unit)
        if self._committers < COMMITTERS:
            self._start()
        return await unit.waiter

    def _start(self) -> None:
        self._committers += 1
        task = asyncio.create_task(self._drain())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = [u for u in self._queue[:MAX_BATCH] if not u.waiter.done()]
                del self._queue[:MAX_BATCH]
                if not batch:
                    continue
                try:
                    if len(batch) == 1 or not await self._together(batch):
                        for u in batch:
                            await self._alone(u)
                except asyncio.CancelledError as e:
                    for u in batch:
                        _fail(u.waiter, e)
                    raise
                self.batches += 1
                self.units += len(batch)
                for u in batch:
                    if u.error is None:
                        _succeed(u.waiter, u.result)
                    else:
                        _fail(u.waiter, u.error)
        finally:
            self._committers -= 1
            if self._queue and self._committers == 0:  # (cancelled: left for a new one)
                self._start()

    async def _together(self, batch: list[_Unit[Any]]) -> bool:
        """One transaction for the whole batch; False (rolled back) if anything failed."""
        try:
            async with self._engine.connect() as conn:
                await conn.begin()
                for u in batch:
                    u.result = await self._work(conn, u)
                await conn.commit()
        except Exception as e:  # noqa: BLE001 - each unit runs again on its own
            log.debug("batch of %d units rolled back, running each alone: %r", len(batch), e)
            return False
        return True

    async def _alone(self, u: _Unit[Any]) -> None:
        try:
            async with self._engine.connect() as conn:
                await conn.begin()
                u.result = await self._work(conn, u)
                await conn.commit()
        except Exception as e:  # noqa: BLE001 - raised to this unit's caller
            u.error = e

    async def _work(self, conn: AsyncConnection, u: _Unit[Any]) -> Any:
        # A session of its own per unit (its ORM state is its own), joined to the batch's
        # transaction: its commit only flushes, its rollback rolls the batch back.
        session = UnitSession(
            bind=conn, join_transaction_mode="rollback_only", expire_on_commit=False
        )
        session.executor = self._executor
        try:
            async with self._holding(session):
                result = await u.work(session)
            if session.has_work():
                await session.commit()
            return result
        finally:
            await session.close()


def _succeed(fut: asyncio.Future[Any], result: Any) -> None:
    if not fut.done():
        fut.set_result(result)


def _fail(fut: asyncio.Future[Any], error: BaseException) -> None:
    if not fut.done():
        fut.set_exception(error)
