"""Flow 4, the join guard: only buyers with active access get in; others are pointed to the bot."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from membership.admin import display_name
from membership.grants import is_active
from membership.invites import note_link_use
from storage.models import ChatGroup, Membership, User, Whitelist
from storage.queries import audit, enqueue


async def _context(
    session: AsyncSession, platform: str, chat_id: str, user_ident: str
) -> tuple[ChatGroup | None, User | None, Membership | None]:
    group = (
        await session.execute(
            select(ChatGroup).where(
                col(ChatGroup.platform) == platform,
                col(ChatGroup.chat_id) == chat_id,
                col(ChatGroup.active),
            )
        )
    ).scalar_one_or_none()
    if group is None:
        return None, None, None
    user = (
        await session.execute(
            select(User).where(
                col(User.platform) == platform, col(User.platform_user_id) == user_ident
            )
        )
    ).scalar_one_or_none()
    m = None
    if user is not None:
        m = (
            await session.execute(
                select(Membership).where(
                    col(Membership.user_id) == user.id, col(Membership.chat_group_id) == group.id
                )
            )
        ).scalar_one_or_none()
    return group, user, m


async def _may_stay(
    session: AsyncSession, group: ChatGroup, user: User | None, user_ident: str
) -> bool:
    """The owner and whitelisted people are never treated as freeloaders."""
    if user is not None and user.id == group.owner_user_id:
        return True
    return (
        await session.execute(
            select(col(Whitelist.id)).where(
                col(Whitelist.chat_group_id) == group.id,
                col(Whitelist.platform_user_id) == user_ident,
            )
        )
    ).first() is not None


async def on_join_request(
    session: AsyncSession, platform: str, chat_id: str, user_ident: str, now: datetime
) -> str:
    """Approve a buyer with active access; decline anyone else and tell them how to buy."""
    group, user, m = await _context(session, platform, chat_id, user_ident)
    if group is None:
        return "unknown_group"  # not ours: leave the request for the chat's own admins
    target = {"chat_id": chat_id, "user_id": user_ident}
    if (m is not None and is_active(m, now)) or await _may_stay(session, group, user, user_ident):
        enqueue(session, "approve_join", platform, target, now)
        audit(session, "system", "join.approve", f"group:{group.id}", now, f"user {user_ident}")
        return "approved"
    enqueue(session, "decline_join", platform, target, now)
    enqueue(
        session,
        "notify",
        platform,
        {
            "user_id": user_ident,
            "key": "join_declined",
            "params": {"group": group.title, "group_id": group.id},
            "language": user.language if user else None,
        },
        now,
    )
    audit(session, "system", "join.decline", f"group:{group.id}", now, f"user {user_ident}")
    return "declined"


class JoinOutcome(StrEnum):
    UNKNOWN_GROUP = "unknown_group"
    MEMBER = "member"
    WHITELISTED = "whitelisted"
    REMOVED = "removed"
    REPORTED = "reported"  # the group's guard is "report": the owner was told, no removal


async def on_member_joined(
    session: AsyncSession,
    platform: str,
    chat_id: str,
    user_ident: str,
    invite_link: str | None,
    now: datetime,
) -> JoinOutcome:
    """A member appeared (Telegram: a chat_member update; WeChat: the worker's room-join, one
    call per contact). Note which invite they used (someone else's single-use invite is
    revoked and its owner re-invited); unless they have access or may stay, act on the
    group's guard: "report" tells the owner, "remove" removes them."""
    group, user, m = await _context(session, platform, chat_id, user_ident)
    if group is None:
        return JoinOutcome.UNKNOWN_GROUP
    await note_link_use(session, group, user.id if user else None, user_ident, invite_link, now)
    if m is not None and is_active(m, now):
        return JoinOutcome.MEMBER
    if await _may_stay(session, group, user, user_ident):
        return JoinOutcome.WHITELISTED
    who = display_name(user) if user is not None else user_ident
    if group.guard == "report":
        await _tell_owner(session, group, "owner_intruder", who, now)
        audit(
            session,
            "system",
            "member.report_unpaid",
            f"group:{group.id}",
            now,
            f"user {user_ident} via {invite_link or 'no link'}",
        )
        return JoinOutcome.REPORTED
    enqueue(session, "remove_member", platform, {"chat_id": chat_id, "user_id": user_ident}, now)
    if platform == "wechat":
        # The intruder is not the bot's contact (WeChat lets the bot message friends only):
        # the owner hears of the removal instead.
        await _tell_owner(session, group, "owner_intruder_removed", who, now)
    else:
        enqueue(
            session,
            "notify",
            platform,
            {
                "user_id": user_ident,
                "key": "removed_no_access",
                "params": {"group": group.title, "group_id": group.id},
                "language": user.language if user else None,
            },
            now,
        )
    audit(
        session,
        "system",
        "member.remove_unpaid",
        f"group:{group.id}",
        now,
        f"user {user_ident} via {invite_link or 'no link'}",
    )
    return JoinOutcome.REMOVED


async def _tell_owner(
    session: AsyncSession, group: ChatGroup, key: str, who: str, now: datetime
) -> None:
    owner = await session.get(User, group.owner_user_id)
    if owner is None:
        return
    enqueue(
        session,
        "notify",
        owner.platform,
        {
            "user_id": owner.platform_user_id,
            "key": key,
            "params": {"group": group.title, "who": who, "group_id": group.id},
            "language": owner.language,
        },
        now,
    )
