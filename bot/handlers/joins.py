"""Join requests and new members: the join guard of DESIGN.md flow 4."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import JOIN_TRANSITION, ChatMemberUpdatedFilter
from aiogram.types import ChatJoinRequest, ChatMemberUpdated
from sqlalchemy.ext.asyncio import AsyncSession

from bot.context import BotContext
from membership.joins import on_join_request, on_member_joined


def router() -> Router:
    r = Router(name="joins")
    r.chat_join_request.register(join_request)
    r.chat_member.register(member_joined, ChatMemberUpdatedFilter(JOIN_TRANSITION))
    return r


async def join_request(request: ChatJoinRequest, ctx: BotContext, session: AsyncSession) -> None:
    await on_join_request(
        session, "telegram", str(request.chat.id), str(request.from_user.id), ctx.clock.now()
    )


async def member_joined(update: ChatMemberUpdated, ctx: BotContext, session: AsyncSession) -> None:
    joined = update.new_chat_member.user
    if joined.is_bot:
        return
    link = update.invite_link.invite_link if update.invite_link else None
    await on_member_joined(
        session, "telegram", str(update.chat.id), str(joined.id), link, ctx.clock.now()
    )
