"""Delivering a broadcast: the outbox handler of `broadcast_send` rows, each recipient's
outcome, and the owner's report when the last one is known.

One recipient, one row. Its handler reads the recipient; one whose outcome is already
stored is not sent again (a row claimed a second time after its lease ran out). Then one
message, then ONE transaction records the outcome, moves the broadcast's counts and settles
the outbox row. The transaction whose count brings delivered + blocked + failed up to the
number of recipients also sets `finished_at` (compare-and-set) and queues the report: the
counts are updated in place, so on PostgreSQL concurrent outcomes of one broadcast wait
for each other's row lock and each sees the total before it; on SQLite writers go one at a
time. Exactly one transaction sees the last outcome: one report, whatever the number of
workers or restarts.

Outcomes: delivered; blocked (403: the user blocked the bot or deleted their account);
failed (any other refusal retrying cannot fix). A 429 waits `retry_after` and 5xx/network
errors back off, through the outbox worker, and are not outcomes.

Exactly once, and where it is at least once: Telegram has no idempotency key, so the only
way to know a message went out is its answer. The outcome is committed right after that
answer (retried for a while if the database does not answer), and a stop (SIGTERM) lets a
send that is under way finish and be recorded before the worker gives the row back; so a
restart sends nobody anything twice. What remains: a process killed (or a database gone
for longer than the retries) between Telegram's answer and that commit. That recipient's
row comes back when its lease runs out and they get the message a second time. The window
is one database commit long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from membership.broadcast import SEND_KIND
from membership.delivery import DeliveryContext, Handler
from membership.gateway import BlockedError, RejectedError
from storage.models import Broadcast, BroadcastRecipient, ChatGroup, Outbox, User, table
from storage.outbox import settle_in

log = logging.getLogger(__name__)

# The catalog text of a broadcast: the owner's words as they wrote them, in every language.
TEXT_KEY = "broadcast_text"
REPORT_KEY = "broadcast_report"
# A stop lets a send under way finish (and be recorded) for at most this long; the service
# gives the whole outbox 10 s to stop.
STOP_GRACE_SECONDS = 5.0
# Recording an outcome after the message went out: tries, and the wait before each retry.
RECORD_RETRIES = (0.5, 1.0, 2.0, 4.0)

_R, _B, _U, _G, _O = (
    table(BroadcastRecipient),
    table(Broadcast),
    table(User),
    table(ChatGroup),
    table(Outbox),
)
_TARGET = (
    select(_R.c.broadcast_id, _R.c.status, _U.c.platform_user_id, _B.c.text)
    .select_from(_R.join(_U, _U.c.id == _R.c.user_id).join(_B, _B.c.id == _R.c.broadcast_id))
    .where(_R.c.id == bindparam("recipient_id"))
)
_OUTCOME = (
    update(_R)
    .where(_R.c.id == bindparam("recipient_id"), _R.c.status == "pending")
    .values(status=bindparam("outcome"), error=bindparam("error"), done_at=bindparam("now"))
)
_COUNT = {
    outcome: update(_B)
    .where(_B.c.id == bindparam("broadcast_id"))
    .values({outcome: _B.c[outcome] + 1})
    for outcome in ("delivered", "blocked", "failed")
}
_FINISH = (
    update(_B)
    .where(
        _B.c.id == bindparam("broadcast_id"),
        _B.c.finished_at.is_(None),
        _B.c.delivered + _B.c.blocked + _B.c.failed >= _B.c.recipients,
    )
    .values(finished_at=bindparam("now"))
)
_REPORT = (
    select(
        _B.c.recipients,
        _B.c.delivered,
        _B.c.blocked,
        _B.c.failed,
        _G.c.id,
        _G.c.title,
        _U.c.platform,
        _U.c.platform_user_id,
    )
    .select_from(_B.join(_G, _G.c.id == _B.c.chat_group_id).join(_U, _U.c.id == _B.c.owner_user_id))
    .where(_B.c.id == bindparam("broadcast_id"))
)


@dataclass(frozen=True)
class Outcome:
    status: str  # delivered | blocked | failed
    error: str | None = None


async def record_outcome(
    s: AsyncSession, broadcast_id: int, recipient_id: int, outcome: Outcome, now: datetime
) -> bool:
    """Store one recipient's outcome and count it; queue the owner's report if it was the
    last. False if the recipient's outcome was stored before (nothing changes then)."""
    changed = await s.execute(
        _OUTCOME,
        {
            "recipient_id": recipient_id,
            "outcome": outcome.status,
            "error": outcome.error and outcome.error[:1000],
            "now": now,
        },
    )
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        return False
    await s.execute(_COUNT[outcome.status], {"broadcast_id": broadcast_id})
    finished = await s.execute(_FINISH, {"broadcast_id": broadcast_id, "now": now})
    if finished.rowcount == 1:  # type: ignore[attr-defined]
        await _queue_report(s, broadcast_id, now)
    return True


async def _queue_report(s: AsyncSession, broadcast_id: int, now: datetime) -> None:
    row = (await s.execute(_REPORT, {"broadcast_id": broadcast_id})).one()
    total, delivered, blocked, failed, group_id, title, platform, owner = row
    await s.execute(
        insert(_O),
        {
            "kind": "notify",
            "platform": platform,
            "payload": {
                "user_id": owner,
                "key": REPORT_KEY,
                "params": {
                    "broadcast_id": broadcast_id,
                    "group": title,
                    "group_id": group_id,
                    "recipients": total,
                    "delivered": delivered,
                    "blocked": blocked,
                    "failed": failed,
                },
                # (the owner's language is read when it is sent)
            },
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        },
    )


async def send_broadcast(ctx: DeliveryContext, payload: dict[str, Any]) -> None:
    recipient_id = int(payload["recipient_id"])

    async def read(s: AsyncSession) -> Any:
        return (await s.execute(_TARGET, {"recipient_id": recipient_id})).first()

    found = await ctx.db.unit(read)
    if found is None:
        return
    broadcast_id, status, user_id, text = found
    if status != "pending":
        return  # recorded already (a second claim of this row): never a second message
    # The send and its record run as a task of their own, so that a stop arriving while
    # the message is on its way cannot cut the two apart (see the module docstring).
    work = asyncio.ensure_future(_send_and_record(ctx, broadcast_id, recipient_id, user_id, text))
    try:
        await asyncio.shield(work)
    except asyncio.CancelledError:
        done, _ = await asyncio.wait({work}, timeout=STOP_GRACE_SECONDS)
        if not done:
            work.cancel()
        with contextlib.suppress(BaseException):
            await work  # (its outcome is in ctx.settled; a 429 or the like: handed back)
        raise


async def _send_and_record(
    ctx: DeliveryContext, broadcast_id: int, recipient_id: int, user_id: str, text: str
) -> None:
    try:
        await ctx.chat.send(user_id, TEXT_KEY, {"text": text}, None)
        outcome = Outcome("delivered")
    except BlockedError as e:
        outcome = Outcome("blocked", str(e))
    except RejectedError as e:
        outcome = Outcome("failed", str(e))
    # (RetryAfter, TransientError and the rest go to the worker: retried, not outcomes.)
    row = ctx.row

    async def store(s: AsyncSession) -> bool:
        await record_outcome(s, broadcast_id, recipient_id, outcome, ctx.now)
        if row is None:
            return False
        # A claim that is no longer ours (claimed again since) is left to the worker's own
        # settle, which compares with the newest claim.
        return await settle_in(
            s,
            row.id,
            row.attempts,
            status="done" if outcome.status == "delivered" else "failed",
            error=outcome.error,
        )

    for wait in (*RECORD_RETRIES, None):
        try:
            ctx.settled = await ctx.db.unit(store)
            return
        except (DBAPIError, OSError) as e:
            # The message is out: sending it again is worse than waiting for the database.
            if wait is None:
                raise
            log.warning("broadcast recipient %s: outcome not stored yet: %s", recipient_id, e)
            await asyncio.sleep(wait)


HANDLERS: dict[str, Handler] = {SEND_KIND: send_broadcast}
