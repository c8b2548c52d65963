"""The periodic sweeps (DESIGN.md flows 5 and 6) on an APScheduler 3 AsyncIOScheduler.

Each job is a thin call of a service function with `now = clock.now()`, drained in batches;
after a run that queued outbox rows the outbox is woken so they go out at once. Every
replica runs the same jobs: the service functions claim their rows with
FOR UPDATE SKIP LOCKED, so replicas share the work instead of repeating it.

`run_sweeps_once(now)` runs every sweep once at a given time: tests and the demo move time
with it deterministically, without waiting for the scheduler.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from billing.replay import forget_raw_bodies
from membership.lapse import remove_lapsed, send_reminders
from storage.clock import Clock
from storage.db import Database
from storage.updates import prune_updates

log = logging.getLogger(__name__)

# billing.reconcile.reconcile_pending bound to its database, providers and settings (and to
# the outbox's wake-up as its on_commit): (now) -> what it did.
ReconcileFn = Callable[[datetime], Awaitable[object]]

# Dropping old webhook bodies is housekeeping: hourly is plenty (a body kept an hour longer
# than keep_raw_days harms no one), and it keeps the scan off every short sweep interval.
HOUSEKEEPING_EVERY_SECONDS = 3600.0  # webhook bodies and update ids: hours-scale retention


class Sweeps:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        interval_seconds: float,
        reminder_days: int,
        grace_hours: int,
        batch: int = 500,
        wake_outbox: Callable[[], None] | None = None,
        reconcile: ReconcileFn | None = None,
        keep_raw_bodies: timedelta = timedelta(days=30),
    ) -> None:
        self.db, self.clock = db, clock
        self.interval_seconds = interval_seconds
        self.reminder_days, self.grace_hours, self.batch = reminder_days, grace_hours, batch
        self.wake_outbox = wake_outbox or (lambda: None)
        self.reconcile_pending = reconcile
        self.keep_raw_bodies = keep_raw_bodies
        self.scheduler: AsyncIOScheduler | None = None
        self._running: set[asyncio.Task[object]] = set()

    # --- the sweeps: one service call each, drained batch by batch --------------------------

    async def remind(self, now: datetime) -> int:
        total = 0
        while n := await send_reminders(
            self.db, now, reminder_days=self.reminder_days, limit=self.batch
        ):
            total += n
            self.wake_outbox()
        if total:
            log.info("queued %d renew reminders", total)
        return total

    async def remove(self, now: datetime) -> int:
        total = 0
        while n := await remove_lapsed(
            self.db, now, grace_hours=self.grace_hours, limit=self.batch
        ):
            total += n
            self.wake_outbox()  # removals start going out while the next batch is claimed
        if total:
            log.info("removed %d lapsed members", total)
        return total

    async def reconcile(self, now: datetime) -> object:
        if self.reconcile_pending is None:
            return None
        return await self.reconcile_pending(now)

    async def forget_bodies(self, now: datetime) -> int:
        """Housekeeping, not a sweep of access or money (so not in run_sweeps_once)."""
        total = 0
        while n := await forget_raw_bodies(
            self.db, now, keep=self.keep_raw_bodies, limit=self.batch
        ):
            total += n
        if total:
            log.info("dropped %d webhook bodies older than %s", total, self.keep_raw_bodies)
        return total

    async def prune(self, now: datetime) -> int:
        """Forget Telegram update ids older than Telegram ever redelivers."""
        return await prune_updates(self.db, now)

    async def run_sweeps_once(self, now: datetime) -> dict[str, object]:
        """Every sweep once, at `now`; returns what each one did."""
        return {
            "reconciled": await self.reconcile(now),
            "removed": await self.remove(now),
            "reminded": await self.remind(now),
        }

    # --- the scheduler ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the interval jobs; needs a running event loop."""
        scheduler = AsyncIOScheduler(timezone=UTC)
        every = self.interval_seconds
        jobs: dict[str, tuple[Callable[[datetime], Awaitable[object]], float]] = {
            "remove_lapsed": (self.remove, every),
            "send_reminders": (self.remind, every),
            "forget_webhook_bodies": (self.forget_bodies, max(every, HOUSEKEEPING_EVERY_SECONDS)),
            "prune_telegram_updates": (self.prune, max(every, HOUSEKEEPING_EVERY_SECONDS)),
        }
        if self.reconcile_pending is not None:
            jobs["reconcile_pending"] = (self.reconcile, every)
        for name, (sweep, seconds) in jobs.items():
            scheduler.add_job(
                self._run,
                IntervalTrigger(seconds=seconds),
                args=[sweep],
                id=name,
                name=name,
                coalesce=True,
                max_instances=1,
                # A run made late by a busy loop still runs (once), rather than being skipped.
                misfire_grace_time=max(1, int(seconds)),
                next_run_time=datetime.now(UTC),  # first sweep at start-up: catch up at once
            )
        # APScheduler logs every run at INFO; the sweeps log what they did themselves.
        logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
        scheduler.start()
        self.scheduler = scheduler

    async def _run(self, sweep: Callable[[datetime], Awaitable[object]]) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            await sweep(self.clock.now())
        except Exception:  # logged here with its name; the next tick retries
            log.exception("sweep %s failed", getattr(sweep, "__name__", sweep))
        finally:
            if task is not None:
                self._running.discard(task)

    async def shutdown(self) -> None:
        """Stop the jobs and wait for running sweeps to stop; a sweep cut short rolls back
        its open batch (nothing half-done), and the next start picks it up again."""
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        running = list(self._running)
        for t in running:
            t.cancel()
        await asyncio.gather(*running, return_exceptions=True)
