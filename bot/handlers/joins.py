"""Join requests and members coming and going: the join guard of DESIGN.md flow 4, and the
members of a channel's Telegram Star subscription (membership/channels.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiogram import Router
from aiogram.filters import JOIN_TRANSITION, ChatMemberUpdatedFilter
from aiogram.types import ChatJoinRequest, ChatMemberMember, ChatMemberUpdated
from sqlalchemy.ext.asyncio import AsyncSession

from bot.context import BotContext
from bot.i18n import pick_language
from membership.channels import StarJoin, on_star_left, on_star_member, on_star_renewed
from membership.joins import on_join_request, on_member_joined

_GONE = ("left", "kicked")


def router() -> Router:
    r = Router(name="joins")
    r.chat_join_request.register(join_request)
    r.chat_member.register(member_joined, ChatMemberUpdatedFilter(JOIN_TRANSITION))
    r.chat_member.register(member_changed)  # any other change: a subscriber renewed or left
    return r


async def join_request(request: ChatJoinRequest, ctx: BotContext, session: AsyncSession) -> None:
    await on_join_request(
        session, "telegram", str(request.chat.id), str(request.from_user.id), ctx.clock.now()
    )


def _subscribed_until(update: ChatMemberUpdated) -> datetime | None:
    """The end of a Star subscription's paid period: ChatMemberMember.until_date."""
    new = update.new_chat_member
    until = new.until_date if isinstance(new, ChatMemberMember) else None
    if until is None:
        return None
    return until if until.tzinfo else until.replace(tzinfo=UTC)


async def member_joined(update: ChatMemberUpdated, ctx: BotContext, session: AsyncSession) -> None:
    joined = update.new_chat_member.user
    if joined.is_bot:
        return
    link = update.invite_link.invite_link if update.invite_link else None
    chat_id, user_id, now = str(update.chat.id), str(joined.id), ctx.clock.now()
    until = _subscribed_until(update)
    if until is not None and update.invite_link is not None:
        # Joined through a Star subscription link: Telegram took the Stars and will remove
        # them when it lapses; recorded, and not judged by the guard.
        star = await on_star_member(
            session,
            "telegram",
            chat_id,
            {
                "platform_user_id": user_id,
                "username": joined.username,
                "first_name": joined.first_name,
                "language": pick_language(None, joined.language_code),
            },
            link,
            bool(update.invite_link.subscription_period),
            until,
            now,
        )
        if star in (StarJoin.RECORDED, StarJoin.KEPT):
            return
    await on_member_joined(session, "telegram", chat_id, user_id, link, now)


async def member_changed(update: ChatMemberUpdated, ctx: BotContext, session: AsyncSession) -> None:
    who = update.new_chat_member.user
    if who.is_bot:
        return
    chat_id, user_id, now = str(update.chat.id), str(who.id), ctx.clock.now()
    until = _subscribed_until(update)
    if until is not None:
        await on_star_renewed(session, "telegram", chat_id, user_id, until, now)
    elif update.new_chat_member.status in _GONE:
        await on_star_left(session, "telegram", chat_id, user_id, now)
