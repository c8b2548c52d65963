"""An owner's /broadcast: who gets it, and queueing it in the command's own transaction.

The recipients are fixed when the command commits: one `broadcast_recipient` row per user
and one outbox row (kind `broadcast_send`) per recipient, written together with the
`broadcast` row. So a restart loses nobody, a member who joins later is not added, and a
re-delivered /broadcast update (already applied: telegram_update) queues nothing twice.
How each message goes out, and the owner's report, is membership/broadcast_send.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from membership.errors import RuleError
from storage.models import (
    Broadcast,
    BroadcastRecipient,
    ChatGroup,
    Membership,
    Outbox,
    User,
    stored_id,
    table,
)
from storage.queries import audit

SEND_KIND = "broadcast_send"
# Telegram's limit for one message (sendMessage `text`), in UTF-16 code units as Telegram
# counts them: an emoji outside the BMP counts twice.
MAX_TEXT = 4096

_M, _U, _R, _OUT = table(Membership), table(User), table(BroadcastRecipient), table(Outbox)


def text_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def recipients_query(group: ChatGroup, now: datetime) -> Select[Any]:
    """The users with active access to the group right now, one row each (user id).

    Active access is what the join guard lets in (grants.is_active): status `active` and not
    past its end. Not included:
    - expired or revoked members, and members still inside the grace period after their end
      (their access is over; only their removal is still to come);
    - `pending_approval` memberships (access not granted yet);
    - people on the group's whitelist without a membership (staff, friends): they stay in the
      group without buying, many have never started the bot (Telegram refuses to message
      them: they would only be "failed" lines in the report), and what the group is told
      they read in the group itself.
    Users of another platform than the group's are left out: the bot can only write to them
    through the group's platform. One row per user (DISTINCT): a member whose access comes
    from two plans (one membership row per user and group, but a bundle and a single plan
    both extend it) is one recipient.
    """
    return (
        select(_M.c.user_id)
        .distinct()
        .join(_U, _U.c.id == _M.c.user_id)
        .where(
            _M.c.chat_group_id == stored_id(group),
            _M.c.status == "active",
            (_M.c.expires_at.is_(None)) | (_M.c.expires_at > now),
            _U.c.platform == group.platform,
        )
    )


async def recipient_ids(session: AsyncSession, group: ChatGroup, now: datetime) -> list[int]:
    """The recipients a broadcast queued now would have (for /broadcast's rules and tests)."""
    return sorted((await session.execute(recipients_query(group, now))).scalars())


@dataclass(frozen=True)
class Queued:
    broadcast_id: int
    recipients: int


async def queue_broadcast(
    session: AsyncSession,
    sender: User,
    group: ChatGroup,
    text: str,
    now: datetime,
    *,
    per_second: float,
) -> Queued:
    """Store the broadcast and queue one message per active member, in the caller's
    transaction (nothing is queued unless it commits). The caller has checked that `sender`
    may manage `group` (catalog.find_managed_group).

    The messages are due one after another, `per_second` of them a second, rather than all
    at once: the outbox claims due rows oldest first, so a broadcast to thousands made due
    at once would hold up every invite and notice queued after it until the last message
    went out. Paced below the process's rate budget, the other rows keep going out in
    between; the rate limiter still paces every single call.
    """
    if not text.strip():
        raise RuleError("broadcast_empty")
    if text_length(text) > MAX_TEXT:
        raise RuleError("broadcast_too_long", length=text_length(text), max=MAX_TEXT)
    broadcast = Broadcast(
        owner_user_id=stored_id(sender),
        chat_group_id=stored_id(group),
        text=text,
        recipients=0,
        created_at=now,
    )
    session.add(broadcast)
    await session.flush()
    bid = stored_id(broadcast)
    # Straight from the membership query (no list of ids sent back and forth, which a group
    # of tens of thousands would push past the drivers' parameter limits); the rows written
    # are then the recipients, whatever committed meanwhile.
    members = recipients_query(group, now).subquery()
    await session.execute(
        insert(_R).from_select(
            ["broadcast_id", "user_id", "status"],
            select(literal(bid), members.c.user_id, literal("pending")),
        )
    )
    rows = (
        await session.execute(
            select(_R.c.id, _U.c.platform)
            .join(_U, _U.c.id == _R.c.user_id)
            .where(_R.c.broadcast_id == bid)
            .order_by(_R.c.id)
        )
    ).all()
    if not rows:
        # (The caller rolls back: the broadcast row goes with it.)
        raise RuleError("broadcast_no_members", group=group.title)
    broadcast.recipients = len(rows)
    gap = timedelta(seconds=1 / per_second)
    await session.execute(
        insert(_OUT),
        [
            {
                "kind": SEND_KIND,
                "platform": platform,
                "payload": {"recipient_id": rid},
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now + i * gap,
                "created_at": now,
            }
            for i, (rid, platform) in enumerate(rows)
        ],
    )
    audit(
        session,
        f"user:{sender.id}",
        "broadcast.queue",
        f"group:{group.id}",
        now,
        f"broadcast #{bid} to {len(rows)} members",
    )
    return Queued(bid, len(rows))
