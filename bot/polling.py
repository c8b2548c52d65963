"""Long polling that confirms an update to Telegram only after it was applied.

Why not aiogram's `Dispatcher.start_polling`: it asks for the next batch (whose offset confirms
the previous one) as soon as a batch is fetched, while its handlers still run, and it logs
and forgets an update whose handler raised. An update whose handler was cut off by a crash,
or whose transaction failed (the database briefly down), is then confirmed and gone: at most
once. Here the offset moves only past the longest prefix of a batch whose updates were applied
(committed, or found applied already in the telegram_update table); the first that failed,
and everything after it, is fetched again. Those that did commit are no-ops the second time
(bot/middlewares.py), so together with that table every update is applied exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiogram import Bot
from aiogram.exceptions import (
    TelegramConflictError,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.methods import GetUpdates
from aiogram.types import Update

log = logging.getLogger(__name__)
T = TypeVar("T")

# An update that failed this many times is given up (logged, confirmed): one bad update must
# not hold up every update after it forever.
MAX_TRIES = 5
# Waits before fetching a failed update again, and after a failed getUpdates: doubling from
# the base, capped.
RETRY_BASE_SECONDS = 0.25
RETRY_CAP_SECONDS = 4.0


class Outcome(enum.Enum):
    APPLIED = "applied"  # its transaction committed, or it had been applied before
    FAILED = "failed"  # it raised: nothing was committed


@dataclass(frozen=True)
class Settled:
    offset: int | None  # the offset for the next getUpdates (None: none yet)
    given_up: tuple[int, ...]  # poison updates confirmed without being applied
    retry: tuple[int, ...]  # failed updates that will be fetched again


def settle(
    offset: int | None,
    outcomes: Sequence[tuple[int, Outcome]],
    failures: Mapping[int, int],
    max_tries: int = MAX_TRIES,
) -> Settled:
    """Where to move the offset after handling a batch.

    `outcomes`: (update_id, outcome) for the batch; `failures`: how many times each update
    has failed so far, this attempt included. The offset moves past the longest prefix (by
    update_id) of updates that were applied or have failed `max_tries` times (given up); the
    first update that failed fewer times stops it, so it and every update after it come
    again (those already applied are then no-ops)."""
    given_up: list[int] = []
    retry: list[int] = []
    blocked = False
    for update_id, outcome in sorted(outcomes, key=lambda o: o[0]):
        if outcome is Outcome.FAILED and failures.get(update_id, 1) < max_tries:
            blocked = True
            retry.append(update_id)
            continue
        if blocked:
            continue  # comes again after the failed one; a given-up one is given up then
        if outcome is Outcome.FAILED:
            given_up.append(update_id)
        offset = update_id + 1 if offset is None else max(offset, update_id + 1)
    return Settled(offset, tuple(given_up), tuple(retry))


def retry_delay(tries: int, base: float | None = None, cap: float | None = None) -> float:
    """Seconds to wait after the `tries`-th failure in a row (1, 2, ...); base and cap
    default to RETRY_BASE_SECONDS and RETRY_CAP_SECONDS."""
    base = RETRY_BASE_SECONDS if base is None else base
    cap = RETRY_CAP_SECONDS if cap is None else cap
    return min(cap, base * 2 ** max(0, tries - 1))


class Poller:
    """getUpdates in a loop; each batch handled concurrently through `handle`, then confirmed
    as `settle` says. `stop` ends a long poll in flight (its updates were not confirmed, so
    they come again) and lets handlers in progress finish within a grace period."""

    def __init__(
        self,
        bot: Bot,
        handle: Callable[[Update], Awaitable[Any]],
        *,
        allowed_updates: list[str],
        timeout: int,
        max_tries: int = MAX_TRIES,
    ) -> None:
        self.bot = bot
        self.handle = handle
        self.allowed_updates = allowed_updates
        self.timeout = timeout
        self.max_tries = max_tries
        self.offset: int | None = None
        self.failures: dict[int, int] = {}
        self.given_up: list[int] = []
        self._stopping = asyncio.Event()
        self._handlers: set[asyncio.Task[Outcome]] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="telegram-polling")

    async def run(self) -> None:
        fetch_failures = 0
        while not self._stopping.is_set():
            try:
                updates = await self._unless_stopped(self._get_updates())
            except TelegramUnauthorizedError as e:
                log.error(
                    "polling stopped: Telegram refused the bot token (401: %s); "
                    "no updates will be received until the token is fixed",
                    e.message,
                )
                return
            except TelegramRetryAfter as e:
                log.warning("getUpdates: flood control, retrying in %ss", e.retry_after)
                await self._pause(float(e.retry_after))
                continue
            except TelegramConflictError as e:
                fetch_failures += 1
                log.warning(
                    "getUpdates conflict (another instance polling, or a webhook "
                    "set): %s; retrying",
                    e.message,
                )
                await self._pause(retry_delay(fetch_failures))
                continue
            except Exception as e:  # noqa: BLE001 - network, 5xx, bad answers: retried
                fetch_failures += 1
                log.warning("getUpdates failed (%s: %s); retrying", type(e).__name__, e)
                await self._pause(retry_delay(fetch_failures))
                continue
            if updates is None:  # stopped while waiting
                return
            fetch_failures = 0
            if updates:
                await self._apply_batch(updates)

    async def _apply_batch(self, updates: Sequence[Update]) -> None:
        tasks = [asyncio.create_task(self._apply(u)) for u in updates]
        self._handlers.update(tasks)
        try:
            await asyncio.wait(tasks)
        finally:
            self._handlers.difference_update(tasks)
        outcomes = [
            (u.update_id, Outcome.FAILED if t.cancelled() else t.result())
            for u, t in zip(updates, tasks, strict=True)
        ]
        if self._stopping.is_set():
            return  # confirmed by the next instance's first getUpdates, or fetched again
        settled = settle(self.offset, outcomes, self.failures, self.max_tries)
        for update_id in settled.given_up:
            log.error(
                "GIVING UP on update %s of bot %s: it failed %d times; it is confirmed "
                "without being applied so the updates after it are not held up",
                update_id,
                self.bot.id,
                self.failures.get(update_id, 0),
            )
        self.given_up.extend(settled.given_up)
        self.offset = settled.offset
        if self.offset is not None:
            self.failures = {k: v for k, v in self.failures.items() if k >= self.offset}
        if settled.retry:
            await self._pause(retry_delay(max(self.failures[u] for u in settled.retry)))

    async def _apply(self, update: Update) -> Outcome:
        try:
            await self.handle(update)
        except Exception:  # nothing committed: it is fetched again
            tries = self.failures[update.update_id] = self.failures.get(update.update_id, 0) + 1
            log.exception(
                "update %s failed (try %d of %d); it will be fetched again",
                update.update_id,
                tries,
                self.max_tries,
            )
            return Outcome.FAILED
        return Outcome.APPLIED

    async def _get_updates(self) -> list[Update]:
        kwargs: dict[str, Any] = {}
        if self.bot.session.timeout:
            # The request must outlive the long poll, or every quiet poll ends in a timeout.
            kwargs["request_timeout"] = int(self.bot.session.timeout + self.timeout)
        return await self.bot(
            GetUpdates(
                offset=self.offset, timeout=self.timeout, allowed_updates=self.allowed_updates
            ),
            **kwargs,
        )

    async def _unless_stopped(self, aw: Awaitable[T]) -> T | None:
        """`aw`'s result, or None if stop() came first (then `aw` is cancelled)."""
        work = asyncio.ensure_future(aw)
        stopped = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not work.done():
                work.cancel()
                await asyncio.wait({work})
        return None if work.cancelled() else work.result()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def stop(self, grace: float) -> None:
        """Stop fetching; give updates being handled `grace` seconds (each is one short
        transaction), then cancel the rest: they were not confirmed, so nothing is lost."""
        self._stopping.set()
        pending = set(self._handlers)
        if pending:
            _done, late = await asyncio.wait(pending, timeout=grace)
            for t in late:
                t.cancel()
            if late:
                log.warning(
                    "cancelled %d update handlers still running at stop; their "
                    "updates were not confirmed and will be fetched again",
                    len(late),
                )
                await asyncio.wait(late)
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=grace)
            if not self._task.done():
                self._task.cancel()
                await asyncio.wait({self._task})
