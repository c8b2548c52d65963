"""/link: one person's Telegram and WeChat accounts become one buyer (membership/links.py).
`/link` gives a one-time code to send to the bot on WeChat; `/link CODE` binds a code made
there."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot.context import BotContext
from bot.i18n import t
from bot.replies import Replies
from membership.admin import display_name
from membership.errors import RuleError
from membership.links import (
    CODE_TTL,
    BindResult,
    LinkOutcome,
    bind_link,
    issue_link_code,
    other_platform,
)
from storage.models import User

_PRIVATE = F.chat.type == "private"

# The reply to each refusal; none changed anything.
_REFUSALS = {
    LinkOutcome.UNKNOWN: "link_code_unknown",
    LinkOutcome.EXPIRED: "link_code_expired",
    LinkOutcome.USED: "link_code_used",
    LinkOutcome.OWN_PLATFORM: "link_own_platform",
}


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
    now = ctx.clock.now()
    args = (command.args or "").split()
    if not args:
        try:
            issued = await issue_link_code(session, user, now)
        except RuleError as e:  # raised before anything was written
            out.add(message.reply(t(e.key, lang, **e.params)))
            return
        minutes = int(CODE_TTL.total_seconds() // 60)
        out.add(
            message.answer(
                t(
                    "link_code_issued",
                    lang,
                    code=issued.code,
                    minutes=minutes,
                    platform=other_platform(user.platform),
                )
            )
        )
        return
    if len(args) != 1:
        out.add(message.reply(t("link_code_unknown", lang)))
        return
    # A refusal wrote nothing; a bind queued the moved access's deliveries (the middleware
    # wakes the outbox after the commit).
    result = await bind_link(session, user, args[0], now)
    out.add(message.reply(reply_text(result, lang)))


def reply_text(result: BindResult, lang: str) -> str:
    """What a bind comes to, in words (the WeChat side says the same)."""
    if result.outcome is LinkOutcome.BOUND:
        assert result.other is not None
        return t(
            "link_bound",
            lang,
            platform=result.other.platform,
            name=display_name(result.other),
            moved=result.moved,
        )
    if result.outcome is LinkOutcome.ALREADY_LINKED:
        platform = result.other.platform if result.other is not None else "wechat"
        return t("link_already", lang, platform=platform)
    return t(_REFUSALS[result.outcome], lang)
