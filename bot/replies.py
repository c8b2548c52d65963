"""What a handler says, and when it is said.

A handler does not call the Bot API to answer: it adds the call to `out` (its `Replies`),
e.g. `out.add(message.answer(text))`. The session middleware then

1. stages every message in the outbox (kind `reply`) in the update's own transaction, held
   back for REPLY_LEASE so the outbox worker leaves it to us;
2. commits: what the handler changed, the update's `telegram_update` row and its replies
   are stored together, or nothing is (and nothing is said);
3. sends the replies in order, each retried for a bounded time (429 `retry_after` obeyed,
   5xx and network errors backed off), and settles their outbox rows (a sent reply's row
   is deleted). A reply that still
   has not landed is handed to the outbox worker (its row becomes due), and so is every
   reply after it, so they keep their order; a process killed after the commit leaves the
   rows to the worker once the lease runs out. A reply is never dropped, and the update is
   acknowledged (webhook 200) whatever happened to its replies.

Callback answers (the spinner on a pressed button) go out first and once: a failed one is
logged and never stops the real reply; they expire within seconds, so they are not stored.
A pre-checkout answer (Telegram Stars) is not stored either, but it is what lets a buyer pay:
it is retried (429, 5xx, network) for as long as Telegram's 10 seconds leave room.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiogram import Bot
from aiogram.methods import AnswerPreCheckoutQuery, TelegramMethod
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bot.calls import chat_of, encode_call, is_send
from bot.gateway import RateLimiter, call
from membership.gateway import RejectedError, RetryAfter
from storage.db import Database
from storage.models import Outbox

log = logging.getLogger(__name__)

REPLY_KIND = "reply"
# How long a staged reply is ours before the outbox worker may take it (a kill after the
# commit): longer than the patience below, so the two never send the same reply.
REPLY_LEASE = timedelta(seconds=60)
# How long a reply may wait in the handler (retry_after, backoff) before the outbox takes it.
REPLY_PATIENCE = 5.0
FIRST_BACKOFF = 0.25
# How long a pre-checkout answer is retried: Telegram waits 10 s from the query, part of
# which went on the update's way here and its transaction.
ANSWER_PATIENCE = 4.0


class Replies:
    """The Bot API calls a handler answers with, in the order it made them."""

    def __init__(self) -> None:
        self.calls: list[TelegramMethod[Any]] = []

    def add(self, method: TelegramMethod[Any]) -> None:
        self.calls.append(method)


@dataclass
class Staged:
    method: TelegramMethod[Any]
    row: Outbox | None  # None: a callback answer, sent once and not stored


@dataclass(frozen=True)
class Later:
    """Not sent in time: the outbox worker takes it after `delay` seconds."""

    delay: float
    error: str


@dataclass(frozen=True)
class Refused:
    """Telegram refused it for good (the user blocked the bot, a bad request)."""

    error: str


class ReplySender:
    """Stages a handler's replies and sends them once the update's transaction committed."""

    def __init__(
        self,
        *,
        patience: float = REPLY_PATIENCE,
        monotonic: Any = time.monotonic,
        sleep: Any = asyncio.sleep,
    ) -> None:
        self.limiter: RateLimiter | None = None  # the process's budget, set by the service
        self.patience = patience
        self._monotonic, self._sleep = monotonic, sleep

    def stage(self, session: AsyncSession, replies: Replies, now: datetime) -> list[Staged]:
        staged = []
        for method in replies.calls:
            row = None
            if is_send(method):
                row = Outbox(
                    kind=REPLY_KIND,
                    platform="telegram",
                    payload={"chat_id": chat_of(method), "call": encode_call(method)},
                    next_attempt_at=now + REPLY_LEASE,
                    created_at=now,
                )
                session.add(row)
            staged.append(Staged(method, row))
        return staged

    async def deliver(self, bot: Bot, db: Database, now: datetime, staged: list[Staged]) -> int:
        """Send what was staged (the transaction is committed); returns how many replies
        were handed to the outbox worker. Never raises: the update is applied either way."""
        done: list[int] = []
        later: dict[int, Later] = {}
        refused: dict[int, Refused] = {}
        handed: Later | None = None
        for item in staged:
            if isinstance(item.method, AnswerPreCheckoutQuery):
                missed = await self._send(bot, item.method, patience=ANSWER_PATIENCE)
                if missed is not None:
                    log.warning("pre-checkout answer not delivered: %s", missed.error)
                continue
            if item.row is None:
                await self._answer_once(bot, item.method)
                continue
            assert item.row.id is not None
            if handed is not None:  # an earlier reply waits: this one waits behind it
                later[item.row.id] = handed
                continue
            outcome = await self._send(bot, item.method)
            if outcome is None:
                done.append(item.row.id)
            elif isinstance(outcome, Refused):
                log.warning("reply to %s refused: %s", chat_of(item.method), outcome.error)
                refused[item.row.id] = outcome
            else:
                log.warning(
                    "reply to %s handed to the outbox: %s", chat_of(item.method), outcome.error
                )
                later[item.row.id] = handed = outcome
        try:
            await _settle(db, now, done, later, refused)
        except Exception:  # the lease hands the rows to the worker anyway
            log.exception(
                "could not settle %d replies; the outbox will take them",
                len(done) + len(later) + len(refused),
            )
        return len(later)

    async def _answer_once(self, bot: Bot, method: TelegramMethod[Any]) -> None:
        try:
            if self.limiter is not None:
                await self.limiter.acquire(None)
            await call(bot(method))
        except Exception as e:  # noqa: BLE001 - a spinner left turning is not worth more
            log.info("%s failed (the reply still goes out): %s", method.__api_method__, e)

    async def _send(
        self, bot: Bot, method: TelegramMethod[Any], patience: float | None = None
    ) -> Later | Refused | None:
        deadline = self._monotonic() + (self.patience if patience is None else patience)
        backoff = FIRST_BACKOFF
        while True:
            if self.limiter is not None:
                await self.limiter.acquire(None)
            try:
                await call(bot(method))
                return None
            except RejectedError as e:
                return Refused(str(e))
            except RetryAfter as e:
                wait, error = float(e.seconds), str(e)
                if self.limiter is not None:
                    self.limiter.pause(chat_of(method), wait)
            except Exception as e:  # noqa: BLE001 - 5xx, network, anything unexpected
                wait, error = backoff, f"{type(e).__name__}: {e}"
                backoff *= 2
            if self._monotonic() + wait > deadline:
                return Later(wait, error)
            await self._sleep(wait)


async def _settle(
    db: Database,
    now: datetime,
    done: list[int],
    later: dict[int, Later],
    refused: dict[int, Refused],
) -> None:
    """Record what happened to the staged rows in one transaction. `attempts == 0` keeps
    it to rows no worker has claimed (one that did owns the outcome)."""
    if not (done or later or refused):
        return
    mine = (col(Outbox.status) == "pending", col(Outbox.attempts) == 0)
    async with db.transaction() as s:
        if done:  # sent: the safety net goes (replies are many; they need no record)
            await s.execute(delete(Outbox).where(col(Outbox.id).in_(done), *mine))
        for row_id, retry in later.items():
            await s.execute(
                update(Outbox)
                .where(col(Outbox.id) == row_id, *mine)
                .values(
                    next_attempt_at=now + timedelta(seconds=retry.delay),
                    last_error=retry.error[:1000],
                )
            )
        for row_id, r in refused.items():
            await s.execute(
                update(Outbox)
                .where(col(Outbox.id) == row_id, *mine)
                .values(status="failed", last_error=r.error[:1000])
            )
