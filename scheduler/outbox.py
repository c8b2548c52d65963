"""The outbox worker: delivers queued platform calls, retrying until they land.

Rows are processed concurrently, up to `concurrency` at a time, and the worker claims more
as soon as slots free up, so a slow row never holds up a batch. The gateway's rate limiter
keeps the calls inside the platform's budget: a row waiting for a busy chat waits alone
(and if that chat's queue is long, it is put back for later and its slot goes to another
chat). The limiter serves a chat's callers first come, first served, so rows of one chat go
out in the order they were claimed unless a handler reads the database before calling.

A 429 waits exactly `retry_after`; 5xx and network errors back off exponentially (capped);
a refusal that retrying cannot fix (4xx) is marked failed with its reason, never silently
dropped. Claims are leases (storage/outbox.py): rows of a worker that dies come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from billing import provider_calls
from membership import broadcast_send
from membership.delivery import HANDLERS, DeliveryContext, Handler
from membership.gateway import ChatGateway, RejectedError, RetryAfter
from storage.clock import Clock
from storage.db import Database
from storage.outbox import ClaimedRow, claim_due, settle

log = logging.getLogger(__name__)
MAX_BACKOFF = timedelta(minutes=10)
# Chat calls (membership/delivery.py) go through the row's platform gateway; provider calls
# (billing/provider_calls.py) name their provider as the row's platform instead.
ALL_HANDLERS: dict[str, Handler] = {
    **HANDLERS,
    **provider_calls.HANDLERS,
    **broadcast_send.HANDLERS,
}
PROVIDER_KINDS = frozenset(provider_calls.HANDLERS)


def backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=2 ** min(attempts, 10)), MAX_BACKOFF)


class OutboxWorker:
    def __init__(
        self,
        db: Database,
        gateways: Mapping[str, ChatGateway],
        clock: Clock,
        *,
        invite_ttl: timedelta,
        batch: int = 50,
        lease: timedelta = timedelta(seconds=120),
        concurrency: int = 100,
        handlers: Mapping[str, Handler] = ALL_HANDLERS,
        providers: Mapping[str, object] | None = None,
        only_platform: str | None = None,
        skip_platform: str | None = None,
    ) -> None:
        # Which rows this worker claims (storage/outbox.claim_due): the WeChat worker only
        # `wechat`, the main service everything but `wechat`.
        self.only_platform, self.skip_platform = only_platform, skip_platform
        self.db, self.gateways, self.clock = db, gateways, clock
        self.providers = providers or {}
        self.invite_ttl, self.batch, self.lease, self.handlers = invite_ttl, batch, lease, handlers
        self.concurrency = max(1, concurrency)
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._tasks: dict[int, asyncio.Task[None]] = {}  # row id -> its delivery
        self._rows: dict[int, ClaimedRow] = {}
        self.delivered = 0
        self.failed = 0
        self.rate_limited = 0  # rows put back to wait for a rate budget or a 429
        self._busy: Callable[[], bool] = lambda: False
        self._busy_longest = 1.0

    def wake(self) -> None:
        """Called after a commit that queued rows, so they go out now rather than next tick."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def yield_to(self, busy: Callable[[], bool], *, longest: float = 1.0) -> None:
        """Let claiming wait while `busy()` says more urgent work is in hand (webhooks that
        carry money), for at most `longest` seconds at a time, so deliveries are delayed a
        little under a burst and never starved."""
        self._busy, self._busy_longest = busy, longest

    async def _wait_for_quiet(self) -> None:
        waited = 0.0
        while self._busy() and waited < self._busy_longest:
            await asyncio.sleep(0.02)
            waited += 0.02

    async def run_forever(self, interval: float) -> None:
        try:
            while True:
                try:
                    await self._wait_for_quiet()
                    more = await self._fill()
                except Exception:  # a bad tick (DB restart) must not stop the worker
                    log.exception("outbox tick failed")
                    more = False
                if not more:
                    await self._idle(interval)
        finally:
            await self._cancel_all()

    async def run_once(self) -> int:
        """Claim one batch, deliver it and wait for the outcome; returns how many rows were
        claimed. For tests and sweeps that move time by hand."""
        rows = await self._claim(min(self.batch, self.concurrency))
        await asyncio.gather(*(self._process(r) for r in rows))
        return len(rows)

    async def drain(self) -> int:
        """run_once until nothing is due; returns how many rows were claimed in all."""
        total = 0
        while n := await self.run_once():
            total += n
        return total

    async def _claim(self, limit: int) -> list[ClaimedRow]:
        return await claim_due(
            self.db,
            self.clock.now(),
            limit,
            self.lease,
            only=self.only_platform,
            skip=self.skip_platform,
        )

    async def _fill(self) -> bool:
        """Claim as many due rows as there are free slots; True if there may be more due."""
        free = self.concurrency - len(self._tasks)
        if free <= 0:
            return False
        want = min(free, self.batch)
        rows = await self._claim(want)
        for r in rows:
            assert r.id is not None
            mine = self._rows.get(r.id)
            if mine is not None:
                # Its lease ran out while we still work on it: one delivery is enough, and it
                # settles under the new claim.
                mine.attempts = r.attempts
                continue
            self._rows[r.id] = r
            task = asyncio.create_task(self._guarded(r))
            self._tasks[r.id] = task
            task.add_done_callback(functools.partial(self._task_done, r.id))
        return len(rows) == want

    def _task_done(self, row_id: int, _task: asyncio.Task[Any]) -> None:
        self._done(row_id)

    def _done(self, row_id: int) -> None:
        self._tasks.pop(row_id, None)
        self._rows.pop(row_id, None)
        # Claim again once a quarter of the slots are free, not after every single row.
        if self.concurrency - len(self._tasks) >= max(1, self.concurrency // 4):
            self._room.set()

    async def _idle(self, interval: float) -> None:
        event = self._room if len(self._tasks) >= self.concurrency else self._wake
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=interval)
        event.clear()

    async def _cancel_all(self) -> None:
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _guarded(self, row: ClaimedRow) -> None:
        try:
            await self._process(row)
        except Exception:  # settling failed (DB gone): the lease brings it back
            log.exception("outbox %s %s could not be settled", row.id, row.kind)

    async def _process(self, row: ClaimedRow) -> None:
        assert row.id is not None
        handler = self.handlers.get(row.kind)
        gateway = self.gateways.get(row.platform)
        if handler is None or (gateway is None and row.kind not in PROVIDER_KINDS):
            await settle(
                self.db,
                row.id,
                status="failed",
                claimed_attempts=row.attempts,
                error=f"no handler for {row.kind} on {row.platform}",
            )
            self.failed += 1
            return
        now = self.clock.now()
        ctx = DeliveryContext(
            db=self.db,
            gateway=gateway,
            now=now,
            invite_ttl=self.invite_ttl,
            providers=self.providers,
            row=row,
        )
        try:
            await handler(ctx, row.payload)
        except asyncio.CancelledError:
            # Shutting down: hand the row back now rather than after the lease. Delivery is
            # at least once anyway, and every handler is safe to run again. A handler that
            # settled its row before giving way (a broadcast message that reached Telegram
            # and was recorded) keeps that outcome: handing it back would send it again.
            if ctx.settled:
                raise
            with contextlib.suppress(Exception):
                await settle(
                    self.db,
                    row.id,
                    status="pending",
                    retry_at=now,
                    claimed_attempts=row.attempts,
                    not_an_attempt=True,
                    error="worker stopped",
                )
            raise
        except RetryAfter as e:
            self.rate_limited += 1
            log.debug("outbox %s %s waits %ss: %s", row.id, row.kind, e.seconds, e)
            await settle(
                self.db,
                row.id,
                status="pending",
                claimed_attempts=row.attempts,
                retry_at=self.clock.now() + timedelta(seconds=e.seconds),
                error=str(e),
                not_an_attempt=True,
            )
        except RejectedError as e:
            log.warning("outbox %s %s refused: %s", row.id, row.kind, e)
            await settle(
                self.db, row.id, status="failed", claimed_attempts=row.attempts, error=str(e)
            )
            self.failed += 1
        except Exception as e:  # noqa: BLE001 - transient or unknown: retry with backoff
            log.warning("outbox %s %s will retry: %s", row.id, row.kind, e)
            await settle(
                self.db,
                row.id,
                status="pending",
                claimed_attempts=row.attempts,
                retry_at=self.clock.now() + backoff(row.attempts),
                error=f"{type(e).__name__}: {e}",
            )
        else:
            if not ctx.settled:  # (a handler may settle it with its own last unit of work)
                await settle(self.db, row.id, claimed_attempts=row.attempts)
            self.delivered += 1
