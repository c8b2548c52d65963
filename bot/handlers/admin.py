"""Owner commands: /setup in the group (a channel's: bot/handlers/channels.py); /addplan,
/addsub, /plans in the private chat."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot.commands import example_prices
from bot.context import BotContext
from bot.handlers.channels import setup_channel
from bot.i18n import t
from bot.owner_actions import OwnerEnv, add_plan_said, plans_text
from bot.replies import Replies
from membership.catalog import TELEGRAM_INVITE_MODES, register_group
from membership.errors import RuleError
from membership.gateway import BotRights
from storage.models import User

_PRIVATE = F.chat.type == "private"


def router() -> Router:
    r = Router(name="admin")
    r.message.register(setup, Command("setup"))
    r.message.register(addplan, Command("addplan"), _PRIVATE)
    r.message.register(addsub, Command("addsub"), _PRIVATE)
    r.message.register(plans, Command("plans"), _PRIVATE)
    r.message.register(private_only, Command("addplan", "addsub", "plans"))
    return r


async def private_only(message: Message, out: Replies, lang: str) -> None:
    out.add(message.reply(t("private_only", lang)))


async def setup(
    message: Message,
    out: Replies,
    command: CommandObject,
    bot: Bot,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    chat = message.chat
    if chat.type == "private" and user is not None:
        # Nobody sends commands into a channel: a channel is set up from here.
        await setup_channel(message, out, command, bot, ctx, session, user, lang)
        return
    if chat.type not in ("group", "supergroup") or user is None or message.from_user is None:
        out.add(message.reply(t("setup_group_only", lang)))
        return
    mode = (command.args or "").strip().lower() or None
    if mode is not None and mode not in TELEGRAM_INVITE_MODES:
        out.add(message.reply(t("setup_bad_mode", lang, mode=mode)))
        return
    sender = await bot.get_chat_member(chat.id, message.from_user.id)
    if sender.status not in ("creator", "administrator"):
        out.add(message.reply(t("setup_not_admin", lang)))
        return
    me = await bot.get_chat_member(chat.id, bot.id)
    rights = BotRights(
        is_admin=me.status == "administrator",
        can_invite_users=bool(getattr(me, "can_invite_users", False)),
        can_restrict_members=bool(getattr(me, "can_restrict_members", False)),
    )
    missing = rights.missing()
    if missing:
        names = ", ".join(t(f"right_{m}", lang) for m in missing)
        out.add(message.reply(t("setup_bot_missing", lang, missing=names)))
        return
    try:
        group, created = await register_group(
            session,
            user,
            "telegram",
            str(chat.id),
            chat.title or str(chat.id),
            ctx.clock.now(),
            invite_mode=mode,
            chat_type="group",
        )
    except RuleError as e:
        out.add(message.reply(t(e.key, lang, **e.params)))
        return
    key = "setup_ok" if created else "setup_refreshed"
    out.add(
        message.reply(
            t(
                key,
                lang,
                group=group.title,
                group_id=group.id,
                mode=group.invite_mode,
                prices=example_prices(ctx.providers.values()),
            )
        )
    )


def _env(ctx: BotContext, lang: str) -> OwnerEnv:
    return OwnerEnv("telegram", ctx.providers, ctx.admin_ids, ctx.clock.now(), lang)


async def _add(
    message: Message,
    out: Replies,
    command: CommandObject,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
    *,
    recurring: bool,
) -> None:
    if user is None:
        return
    said = await add_plan_said(
        session,
        user,
        command.args,
        _env(ctx, lang),
        lambda g: ctx.buy_link(g.id or 0),
        recurring=recurring,
    )
    out.add(message.reply(said.text))


async def addplan(
    message: Message,
    out: Replies,
    command: CommandObject,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    await _add(message, out, command, ctx, session, user, lang, recurring=False)


async def addsub(
    message: Message,
    out: Replies,
    command: CommandObject,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    await _add(message, out, command, ctx, session, user, lang, recurring=True)


async def plans(
    message: Message,
    out: Replies,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    if user is None:
        return
    out.add(message.answer(await plans_text(session, user, _env(ctx, lang))))
