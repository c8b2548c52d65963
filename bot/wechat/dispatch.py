"""One WeChat message, applied exactly once: the WeChat counterpart of bot/middlewares.py.

In ONE transaction: claim the message's id (table wechat_message; a message the puppet
delivers again is a no-op), run the conversation handler, queue what it answers as outbox
`reply` rows (platform `wechat`), commit. Nothing is said before the commit: the replies
are rows the WeChat worker's outbox sends afterwards, so a failed commit says nothing and a
reply that meets a dropped connection is retried, never lost.

A handler that raises rolls everything back and the message is released (its claim removed)
if one of the handler's own commits had made it durable (billing.checkout.open_checkout
commits before asking the provider): the puppet's next delivery must apply it again. The
sender hears nothing (there is nothing true to say); the error is logged.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bot.wechat.events import Incoming, Outgoing
from storage.claims import claim_state, track_claim
from storage.clock import Clock
from storage.db import Database
from storage.models import WechatMessage
from storage.queries import enqueue, insert_ignore

log = logging.getLogger(__name__)

# What the conversation handler is to the dispatcher: the session of the message's
# transaction and the message; it returns what to say (bot/wechat/conversation.on_message
# with its WechatEnv bound by the worker).
MessageHandler = Callable[[AsyncSession, Incoming], Awaitable[list[Outgoing]]]

# A puppet redelivers what it had not confirmed around a reconnect, minutes later at most;
# a few days covers every redelivery, as for Telegram's updates (storage/updates.py).
MESSAGE_RETENTION = timedelta(days=3)

# session.info key: where the message's claim stands in the session.
_CLAIM = "wechat_message_claim"


class Applied(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # applied before: nothing done
    FAILED = "failed"  # the handler or the commit failed: nothing kept, nothing said


async def claim_message(session: AsyncSession, message_id: str, now: datetime) -> bool:
    """Record the message as applied in the caller's transaction; False if it already was.
    On PostgreSQL a second worker with the same message waits on the unique index until the
    first commits (then skips) or rolls back (then applies it)."""
    new_id = await insert_ignore(
        session,
        WechatMessage,
        {"message_id": message_id, "applied_at": now},
        conflict=["message_id"],
    )
    return new_id is not None


async def release_message(db: Database, message_id: str) -> None:
    """Forget that a message was applied (its handler committed part way, then failed)."""
    async with db.transaction() as s:
        await s.execute(delete(WechatMessage).where(col(WechatMessage.message_id) == message_id))


async def prune_messages(db: Database, now: datetime, keep: timedelta = MESSAGE_RETENTION) -> int:
    """Forget messages older than any redelivery; returns how many."""
    async with db.transaction() as s:
        result = await s.execute(
            delete(WechatMessage).where(col(WechatMessage.applied_at) < now - keep)
        )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def reply_payload(out: Outgoing) -> dict[str, Any]:
    """An Outgoing as the outbox `reply` row's payload (WechatGateway.send_prepared)."""
    call: dict[str, Any]
    if out.image_png is not None:
        call = {"image_base64": base64.b64encode(out.image_png).decode(), "name": out.image_name}
    elif out.text:
        call = {"text": out.text}
    else:
        raise ValueError(f"an Outgoing to {out.to} with neither text nor image")
    return {"chat_id": out.to, "call": call}


class Dispatcher:
    """Applies messages with `handler`; `wake` is called after a commit that queued rows."""

    def __init__(
        self, db: Database, clock: Clock, handler: MessageHandler, wake: Callable[[], None]
    ) -> None:
        self.db, self.clock, self.handler, self.wake = db, clock, handler, wake
        self.duplicates = 0
        self.failures = 0

    async def apply(self, msg: Incoming) -> Applied:
        committed_claim = False
        try:
            async with self.db.session() as session:
                now = self.clock.now()
                if not await claim_message(session, msg.message_id, now):
                    self.duplicates += 1
                    log.info("WeChat message %s was applied already", msg.message_id)
                    return Applied.DUPLICATE
                track_claim(session, _CLAIM)
                try:
                    replies = await self.handler(session, msg)
                    if claim_state(session, _CLAIM) == "lost" and not await claim_message(
                        session, msg.message_id, now
                    ):
                        # The handler undid its work and another worker applied the message
                        # meanwhile: say nothing twice.
                        await session.rollback()
                        self.duplicates += 1
                        return Applied.DUPLICATE
                    for out in replies:
                        enqueue(session, "reply", "wechat", reply_payload(out), now)
                    await session.commit()
                except Exception:
                    committed_claim = claim_state(session, _CLAIM) == "committed"
                    raise
        except Exception:
            self.failures += 1
            log.exception("WeChat message %s from %s failed", msg.message_id, msg.sender_id)
            if committed_claim:
                try:
                    await release_message(self.db, msg.message_id)
                except Exception:  # the database is gone too: the first error matters
                    log.exception("WeChat message %s: could not release it", msg.message_id)
            return Applied.FAILED
        self.wake()  # its replies, and whatever else the handler queued
        return Applied.APPLIED
