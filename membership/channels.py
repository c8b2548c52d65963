"""Channels: Telegram Star subscription links and the access they give.

With a Star subscription link (/starlink) Telegram charges the member in Stars every 30 days,
keeps the money, and removes the member when a period ends unpaid. gatepass only records
the access, from the channel's chat_member updates: the join (ChatMemberMember.until_date is
the end of the paid period), each renewal (until_date moves on) and the end (left or kicked).
Such a membership carries `star_link`, so our lapse sweeps do not remove it and the join
guard does not kick it: Telegram does both. No order or payment row is written for it: the
Stars never reach our ledger, and /stats counts these members on a line of their own.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from membership.catalog import find_managed_group
from membership.errors import RuleError
from membership.grants import is_active
from storage.models import ChatGroup, Membership, StarLink, User, stored_id
from storage.queries import audit, get_or_create_user

# Telegram's terms for subscription links: always 30 days, 1..10000 Stars a period.
STAR_PERIOD_SECONDS = 2592000
STAR_PRICE_MAX = 10000  # from 1


async def star_link_channel(
    session: AsyncSession, user: User, ref: str, admin_ids: Any
) -> ChatGroup:
    """The channel `ref` names, if the user manages it; a group is refused (Telegram makes
    subscription links for channels only)."""
    group = await find_managed_group(session, user, ref, admin_ids)
    if group.platform != "telegram" or group.chat_type != "channel":
        raise RuleError("starlink_channel_only", group=group.title)
    return group


async def star_links(session: AsyncSession, group_ids: list[int]) -> list[StarLink]:
    """The Star subscription links made for these channels, oldest first."""
    if not group_ids:
        return []
    return list(
        (
            await session.execute(
                select(StarLink)
                .where(col(StarLink.chat_group_id).in_(group_ids))
                .order_by(col(StarLink.id))
            )
        )
        .scalars()
        .all()
    )


async def record_star_link(
    session: AsyncSession,
    owner: User,
    group: ChatGroup,
    link: str,
    name: str | None,
    price_stars: int,
    now: datetime,
) -> StarLink:
    row = StarLink(
        chat_group_id=stored_id(group),
        link=link,
        name=name,
        price_stars=price_stars,
        created_by=stored_id(owner),
        created_at=now,
    )
    session.add(row)
    await session.flush()
    audit(
        session,
        f"user:{owner.id}",
        "starlink.create",
        f"group:{group.id}",
        now,
        f"{price_stars} XTR / 30 days; {link}",
    )
    return row


class StarJoin(StrEnum):
    UNKNOWN_GROUP = "unknown_group"
    NOT_A_SUBSCRIPTION = "not_a_subscription"  # not through a Star link: the join guard decides
    RECORDED = "recorded"
    KEPT = "kept"  # paid access of ours already runs past the subscription's end


async def _group(session: AsyncSession, platform: str, chat_id: str) -> ChatGroup | None:
    return (
        await session.execute(
            select(ChatGroup).where(
                col(ChatGroup.platform) == platform,
                col(ChatGroup.chat_id) == chat_id,
                col(ChatGroup.active),
            )
        )
    ).scalar_one_or_none()


async def _membership(session: AsyncSession, user_id: int, group_id: int) -> Membership | None:
    return (
        await session.execute(
            select(Membership)
            .where(col(Membership.user_id) == user_id, col(Membership.chat_group_id) == group_id)
            .with_for_update()
        )
    ).scalar_one_or_none()


async def on_star_member(
    session: AsyncSession,
    platform: str,
    chat_id: str,
    who: dict[str, Any],
    link: str | None,
    link_is_subscription: bool,
    until: datetime,
    now: datetime,
) -> StarJoin:
    """A member joined with a subscription's end date (`until`). Recorded when the link is
    one of ours (/starlink) or Telegram says it is a subscription link (one the owner made in
    the app: Telegram took the Stars all the same). `who`: platform_user_id, username,
    first_name, language."""
    group = await _group(session, platform, chat_id)
    if group is None:
        return StarJoin.UNKNOWN_GROUP
    ours = (
        link is not None
        and (
            await session.execute(
                select(col(StarLink.id)).where(
                    col(StarLink.link) == link, col(StarLink.chat_group_id) == group.id
                )
            )
        ).first()
        is not None
    )
    if not link or not (ours or link_is_subscription):
        return StarJoin.NOT_A_SUBSCRIPTION
    user = await get_or_create_user(
        session,
        platform,
        who["platform_user_id"],
        now,
        username=who.get("username"),
        first_name=who.get("first_name"),
        language=who.get("language"),
    )
    uid, gid = stored_id(user), stored_id(group)
    m = await _membership(session, uid, gid)
    if (
        m is not None
        and m.star_link is None
        and is_active(m, now)
        and (m.expires_at is None or m.expires_at >= until)
    ):
        # They hold paid access of ours for longer: ours stays in charge, Telegram's end is
        # remembered (a refund of ours then cuts back to it, not to nothing).
        m.star_until, m.updated_at = until, now
        return StarJoin.KEPT
    if m is None:
        m = Membership(user_id=uid, chat_group_id=gid, starts_at=now, updated_at=now)
        session.add(m)
    elif not is_active(m, now):
        m.starts_at = now
    m.status, m.expires_at, m.star_link, m.star_until = "active", until, link, until
    m.auto_renew, m.reminded_at, m.updated_at = False, None, now
    m.plan_id, m.provider_subscription_id = None, None
    await session.flush()
    audit(
        session,
        "telegram",
        "membership.star_join",
        f"membership:{m.id}",
        now,
        f"user {uid} group {gid} until {until.isoformat()} via {link}",
    )
    return StarJoin.RECORDED


async def _star_membership(
    session: AsyncSession, platform: str, chat_id: str, user_ident: str
) -> Membership | None:
    return await _channel_membership(
        session, platform, chat_id, user_ident, col(Membership.star_link).is_not(None)
    )


async def _channel_membership(
    session: AsyncSession,
    platform: str,
    chat_id: str,
    user_ident: str,
    *conditions: ColumnElement[bool],
) -> Membership | None:
    """The user's membership of the chat that meets `conditions`, locked."""
    return (
        await session.execute(
            select(Membership)
            .join(ChatGroup, col(ChatGroup.id) == col(Membership.chat_group_id))
            .join(User, col(User.id) == col(Membership.user_id))
            .where(
                col(ChatGroup.platform) == platform,
                col(ChatGroup.chat_id) == chat_id,
                col(User.platform) == platform,
                col(User.platform_user_id) == user_ident,
                *conditions,
            )
            .with_for_update()
        )
    ).scalar_one_or_none()


async def on_star_renewed(
    session: AsyncSession,
    platform: str,
    chat_id: str,
    user_ident: str,
    until: datetime,
    now: datetime,
) -> bool:
    """Telegram renewed a subscriber (a chat_member update with a later until_date): their
    access runs to the new end. Never shortened; an update for someone else is ignored.

    Paid access of ours that took over from the subscription is extended too: the member
    paid Telegram for this period, and our lapse sweep must not remove them before it ends."""
    m = await _star_membership(session, platform, chat_id, user_ident)
    if m is None:
        m = await _taken_over(session, platform, chat_id, user_ident)
        if m is None:
            return False
        if m.star_until is None or m.star_until < until:
            m.star_until = until
        if m.status != "active" or m.expires_at is None or m.expires_at >= until:
            return False
        m.expires_at, m.updated_at = until, now
        await session.flush()
        audit(
            session,
            "telegram",
            "membership.star_renew",
            f"membership:{m.id}",
            now,
            f"until {until.isoformat()} (paid access of ours extended)",
        )
        return True
    m.star_until = until if m.star_until is None or m.star_until < until else m.star_until
    if m.status == "active" and m.expires_at is not None and m.expires_at >= until:
        return False
    if m.status != "active":
        m.status, m.starts_at = "active", now
    m.expires_at, m.updated_at = until, now
    await session.flush()
    audit(
        session,
        "telegram",
        "membership.star_renew",
        f"membership:{m.id}",
        now,
        f"until {until.isoformat()}",
    )
    return True


async def _taken_over(
    session: AsyncSession, platform: str, chat_id: str, user_ident: str
) -> Membership | None:
    """The user's membership of the channel that paid access of ours took over from a Star
    subscription (star_link cleared, star_until kept)."""
    return await _channel_membership(
        session,
        platform,
        chat_id,
        user_ident,
        col(Membership.star_link).is_(None),
        col(Membership.star_until).is_not(None),
    )


async def on_star_left(
    session: AsyncSession, platform: str, chat_id: str, user_ident: str, now: datetime
) -> bool:
    """A subscriber left, or Telegram removed them at the end of a period: their access
    through the link is over. Nothing to remove or revoke: they are out already."""
    m = await _star_membership(session, platform, chat_id, user_ident)
    if m is None:
        over = await _taken_over(session, platform, chat_id, user_ident)
        if over is not None:  # paid access of ours goes on; Telegram's paid time is over
            over.star_until, over.updated_at = None, now
        return False
    if m.status != "active":
        return False
    moved = await session.execute(
        update(Membership)
        .where(col(Membership.id) == m.id, col(Membership.status) == "active")
        .values(status="expired", updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        return False
    m.status, m.updated_at = "expired", now
    audit(
        session,
        "telegram",
        "membership.expired",
        f"membership:{m.id}",
        now,
        "Star subscription ended (left or removed by Telegram)",
    )
    return True
