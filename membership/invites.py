"""Invites of a membership: which one may still be sent, and what a link used by the wrong
person costs its owner."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from membership.grants import is_active
from storage.models import ChatGroup, Invite, Membership, table
from storage.queries import audit, enqueue

# A link about to expire is not worth sending: the buyer needs a little time to tap it.
MIN_LIFE_LEFT = timedelta(minutes=5)


_I = table(Invite)
# Built once: every delivery reads it (membership/delivery.py, in a unit of work).
_USABLE = (
    select(_I.c.id, _I.c.link, _I.c.expires_at)
    .where(
        _I.c.membership_id == bindparam("membership_id"),
        _I.c.revoked.is_(False),
        _I.c.used_by.is_(None),
        _I.c.expires_at > bindparam("fresh_after"),
    )
    .order_by(_I.c.id.desc())
    .limit(1)
)


async def usable_invite(session: AsyncSession, membership_id: int, now: datetime) -> Any:
    """The membership's newest invite nobody has used, not revoked, not (nearly) expired:
    a row with id, link and expires_at, or None."""
    return (
        await session.execute(
            _USABLE, {"membership_id": membership_id, "fresh_after": now + MIN_LIFE_LEFT}
        )
    ).first()


class LinkUse(StrEnum):
    NOT_OURS = "not_ours"  # no link, or a link we did not make for this group
    OWN = "own"  # the member used their own invite
    BURNED = "burned"  # someone else used a member's invite: revoked, owner re-invited


async def note_link_use(
    session: AsyncSession,
    group: ChatGroup,
    joiner_user_id: int | None,
    joiner_ident: str,
    link: str | None,
    now: datetime,
) -> LinkUse:
    """Record who joined through `link`. A single-use link used by anyone but its owner is
    spent for the owner (member_limit=1): it is marked used and revoked, and the owner, if
    still entitled, gets a fresh one through the outbox without having to ask."""
    if not link:
        return LinkUse.NOT_OURS
    found = (
        await session.execute(
            select(Invite, Membership)
            .join(Membership, col(Membership.id) == col(Invite.membership_id))
            .where(col(Invite.link) == link, col(Membership.chat_group_id) == group.id)
            .order_by(col(Invite.id).desc())
            .limit(1)
        )
    ).first()
    if found is None:
        return LinkUse.NOT_OURS
    invite, owner_m = found
    if joiner_user_id is not None and owner_m.user_id == joiner_user_id:
        await session.execute(
            update(Invite)
            .where(
                col(Invite.id) == invite.id,
                col(Invite.used_by).is_(None),
            )
            .values(used_by=joiner_ident)
        )
        return LinkUse.OWN
    if group.invite_mode != "single_use":
        # A join-request link lets nobody in by itself: each request is judged on its own.
        return LinkUse.NOT_OURS
    spent = await session.execute(
        update(Invite)
        .where(
            col(Invite.id) == invite.id,
            col(Invite.revoked).is_(False),
        )
        .values(revoked=True, used_by=invite.used_by or joiner_ident)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        return LinkUse.BURNED  # handled already (a redelivered update)
    enqueue(session, "revoke_invite", group.platform, {"chat_id": group.chat_id, "link": link}, now)
    audit(
        session,
        "system",
        "invite.burned",
        f"group:{group.id}",
        now,
        f"invite {invite.id} of membership {owner_m.id} used by {joiner_ident}",
    )
    if is_active(owner_m, now) and group.active:
        enqueue(
            session,
            "deliver_invite",
            group.platform,
            {
                "membership_id": owner_m.id,
                "chat_id": group.chat_id,
                "replaced": True,
            },
            now,
        )
    return LinkUse.BURNED
