"""Flow 5, lapse: remind before the end of a paid period, remove after the grace period.

Both sweeps claim due memberships with SELECT ... FOR UPDATE SKIP LOCKED, one short
transaction per batch, and change each row with a compare-and-set: several replicas may run
them on one PostgreSQL at the same moment and still no member is reminded or removed twice.
Their due-row queries are range scans of ix_membership_status_expires (status, expires_at),
so their cost follows the number of due rows, not the size of the membership table.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from membership.removal import end_access
from storage.db import Database
from storage.dialects import minus_days
from storage.models import ChatGroup, Membership, User
from storage.queries import enqueue

# A button URL the gateway replaces with the platform's deep link to buy this group again
# (Telegram: https://t.me/<bot>?start=g_<group_id>); membership/ does not know the bot's name.
BUY_LINK = "{buy_link}"


def due_reminders(now: datetime, reminder_days: int, limit: int) -> Any:
    """Active, ending within reminder_days, not auto-renewing, not yet reminded for this period.

    "This period" starts reminder_days before expires_at: a renewal moves expires_at on, so
    the reminder sent for the old end date no longer counts and the next one is due in time.
    Memberships only: joining users and groups here would let the planner scan those tables.
    """
    period_start = minus_days(col(Membership.expires_at), reminder_days)
    return (
        select(Membership)
        .where(
            col(Membership.status) == "active",
            col(Membership.expires_at) > now,
            col(Membership.expires_at) <= now + timedelta(days=reminder_days),
            col(Membership.auto_renew).is_(False),
            # Telegram renews a Star subscription (or ends it) by itself: no nudge from us.
            col(Membership.star_link).is_(None),
            or_(
                col(Membership.reminded_at).is_(None),
                col(Membership.reminded_at) < period_start,
            ),
        )
        .order_by(col(Membership.expires_at), col(Membership.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


def due_removals(now: datetime, grace_hours: int, limit: int) -> Any:
    """Active memberships whose end date plus the grace period has passed. A lifetime
    membership (expires_at NULL) never matches: NULL < x is not true."""
    cutoff = now - timedelta(hours=grace_hours)
    return (
        select(Membership)
        .where(
            col(Membership.status) == "active",
            col(Membership.expires_at) < cutoff,
            # A Star subscription (membership/channels.py): Telegram removes that member
            # itself when it lapses, and its chat_member update ends our record.
            col(Membership.star_link).is_(None),
        )
        .order_by(col(Membership.expires_at), col(Membership.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


async def send_reminders(db: Database, now: datetime, *, reminder_days: int, limit: int) -> int:
    """Queue one renew reminder for each due membership of one batch; returns how many.

    Call again while it returns a positive number to drain everything that is due.
    """
    if reminder_days <= 0 or limit <= 0:
        return 0
    sent = 0
    async with db.transaction() as s:
        rows = list((await s.execute(due_reminders(now, reminder_days, limit))).scalars().all())
        users, groups = await _load_people(s, rows)
        for m in rows:
            # Compare-and-set on what we read: only the transaction that moves reminded_at
            # queues the message (the row lock already ensures it on PostgreSQL).
            seen = (
                col(Membership.reminded_at).is_(None)
                if m.reminded_at is None
                else col(Membership.reminded_at) == m.reminded_at
            )
            moved = await s.execute(
                update(Membership)
                .where(
                    col(Membership.id) == m.id,
                    col(Membership.status) == "active",
                    col(Membership.expires_at) == m.expires_at,
                    seen,
                )
                .values(reminded_at=now)
                .execution_options(synchronize_session=False)
            )
            group, user = groups[m.chat_group_id], users[m.user_id]
            # A group no longer on sale gets no "renew" nudge; the period counts as handled.
            if moved.rowcount != 1 or not group.active:  # type: ignore[attr-defined]
                continue
            assert m.expires_at is not None
            enqueue(
                s,
                "notify",
                user.platform,
                {
                    "user_id": user.platform_user_id,
                    "key": "renew_reminder",
                    "params": {
                        "group": group.title,
                        "group_id": group.id,
                        "until": m.expires_at.isoformat(),
                    },
                    "language": user.language,
                    "buttons": [
                        {"text_key": "btn_renew", "url": BUY_LINK, "params": {"group": group.title}}
                    ],
                },
                now,
            )
            sent += 1
    return sent


async def _load_people(
    s: AsyncSession, rows: list[Membership]
) -> tuple[dict[int, User], dict[int, ChatGroup]]:
    """The users and groups of a batch, two queries by primary key (and in the session, so
    end_access finds them there instead of asking the database once per row)."""
    if not rows:
        return {}, {}
    users = (
        (await s.execute(select(User).where(col(User.id).in_({m.user_id for m in rows}))))
        .scalars()
        .all()
    )
    groups = (
        (
            await s.execute(
                select(ChatGroup).where(col(ChatGroup.id).in_({m.chat_group_id for m in rows}))
            )
        )
        .scalars()
        .all()
    )
    return (
        {u.id: u for u in users if u.id is not None},
        {g.id: g for g in groups if g.id is not None},
    )


async def remove_lapsed(db: Database, now: datetime, *, grace_hours: int, limit: int) -> int:
    """End the access of each membership of one batch that is past its end date plus the
    grace period: end_access marks it expired, queues the removal from the chat (ban, then
    unban), revokes its unused invite links and tells the user how to come back.

    Returns how many were removed; call again while it returns a positive number.
    """
    if limit <= 0:
        return 0
    removed = 0
    async with db.transaction() as s:
        rows = list((await s.execute(due_removals(now, grace_hours, limit))).scalars().all())
        if not rows:
            return 0
        people = await _load_people(s, rows)  # held: the session only keeps weak references
        # Batch speed-ups that change nothing about the outcome: the rows leave the session
        # (end_access's UPDATE would otherwise re-evaluate every loaded membership, per row),
        # and the outbox and audit rows are written together at commit, not one by one
        # before each invite query (they touch no row those queries read).
        for m in rows:
            s.expunge(m)
        with s.no_autoflush:
            for m in rows:
                assert m.expires_at is not None
                if await end_access(
                    s,
                    m,
                    now,
                    status="expired",
                    actor="system",
                    reason=f"lapsed: ended {m.expires_at.isoformat()}, grace {grace_hours}h",
                    notice_key="access_ended",
                ):
                    removed += 1
        del people
    return removed
