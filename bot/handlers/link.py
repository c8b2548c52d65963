"""/link: one person's Telegram and WeChat accounts become one buyer (membership/links.py).
`/link` gives a one-time code to send to the bot on WeChat; `/link CODE` binds a code made
there. The words are bot/link_replies.py's, shared with the WeChat conversation."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot.context import BotContext
from bot.i18n import t
from bot.link_replies import link_reply
from bot.replies import Replies
from storage.models import User

_PRIVATE = F.chat.type == "private"


def router() -> Router:
    r = Router(name="link")
    r.message.register(link, Command("link"), _PRIVATE)
    r.message.register(private_only, Command("link"))
    return r


async def private_only(message: Message, out: Replies, lang: str) -> None:
    out.add(message.reply(t("private_only", lang)))


async def link(
    message: Message,
    out: Replies,
    command: CommandObject,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    if user is None:
        return
    # A refusal wrote nothing; a bind queued the moved access's deliveries (the middleware
    # wakes the outbox after the commit).
    out.add(message.reply(await link_reply(session, user, command.args, ctx.clock.now(), lang)))
