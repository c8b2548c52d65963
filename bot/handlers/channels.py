"""Channels in the owner's private chat: /setup @channel, a forwarded channel post, /starlink.

Nobody sends commands into a channel as a user, so a channel is registered from the private
chat: by its @username, or by forwarding one of its posts (the message's forward_origin names
the channel, public or private). The same checks as /setup in a group, against the channel:
the bot is an administrator with the rights it needs, and the sender is the creator.
"""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.filters import Command, CommandObject
from aiogram.types import ChatMemberAdministrator, ChatMemberOwner, Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot.commands import (
    ArgError,
    example_prices,
    parse_channel_setup_args,
    parse_starlink_args,
)
from bot.context import BotContext
from bot.i18n import t
from bot.replies import Replies
from membership.catalog import TELEGRAM_INVITE_MODES, register_group
from membership.channels import (
    STAR_PERIOD_SECONDS,
    STAR_PRICE_MAX,
    record_star_link,
    star_link_channel,
)
from membership.errors import RuleError
from membership.gateway import BotRights
from storage.models import User

_PRIVATE = F.chat.type == "private"


def router() -> Router:
    r = Router(name="channels")
    r.message.register(setup_by_forward, _PRIVATE, F.forward_origin.type == "channel")
    r.message.register(starlink, Command("starlink"), _PRIVATE)
    r.message.register(private_only, Command("starlink"))
    return r


async def private_only(message: Message, out: Replies, lang: str) -> None:
    out.add(message.reply(t("private_only", lang)))


def channel_rights(me: object) -> BotRights:
    """What the bot may do in the channel, from its getChatMember. Telegram reports
    can_restrict_members as always true for a channel's administrators (channels have no
    such switch), so in practice only administrator status and the right to invite users
    via link can be missing."""
    return BotRights(
        is_admin=isinstance(me, ChatMemberAdministrator),
        can_invite_users=bool(getattr(me, "can_invite_users", False)),
        can_restrict_members=bool(getattr(me, "can_restrict_members", False)),
    )


async def setup_channel(
    message: Message,
    out: Replies,
    command: CommandObject,
    bot: Bot,
    ctx: BotContext,
    session: AsyncSession,
    user: User,
    lang: str,
) -> None:
    """/setup @channelusername [mode], sent in the private chat (bot/handlers/admin.py)."""
    if not command.args:
        out.add(message.answer(t("setup_channel_usage", lang)))
        return
    try:
        args = parse_channel_setup_args(command.args, TELEGRAM_INVITE_MODES)
    except ArgError as e:
        out.add(message.reply(f"{t(e.key, lang, **e.params)}\n{t('setup_channel_usage', lang)}"))
        return
    await _register(message, out, bot, ctx, session, user, lang, args.channel, args.mode)


async def setup_by_forward(
    message: Message,
    out: Replies,
    bot: Bot,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    """A post forwarded from a channel: register that channel (the default invite mode)."""
    origin = message.forward_origin
    chat = getattr(origin, "chat", None)
    if user is None or chat is None:
        return
    await _register(message, out, bot, ctx, session, user, lang, chat.id, None)


async def _register(
    message: Message,
    out: Replies,
    bot: Bot,
    ctx: BotContext,
    session: AsyncSession,
    user: User,
    lang: str,
    ref: str | int,
    mode: str | None,
) -> None:
    shown = str(ref)
    try:
        chat = await bot.get_chat(ref)
    except (TelegramBadRequest, TelegramForbiddenError):
        out.add(message.reply(t("setup_channel_not_found", lang, ref=shown)))
        return
    title = chat.title or shown
    if chat.type != "channel":
        out.add(message.reply(t("setup_channel_is_group", lang, title=title)))
        return
    try:
        me = await bot.get_chat_member(chat.id, bot.id)
    except (TelegramBadRequest, TelegramForbiddenError):
        me = None  # a bot that is no administrator may not even read the channel's members
    missing = channel_rights(me).missing()
    if missing:
        names = ", ".join(t(f"right_{m}", lang) for m in missing)
        out.add(message.reply(t("setup_channel_bot_missing", lang, title=title, missing=names)))
        return
    sender = await bot.get_chat_member(chat.id, int(user.platform_user_id))
    if not isinstance(sender, ChatMemberOwner):
        out.add(message.reply(t("setup_channel_not_creator", lang, title=title)))
        return
    try:
        group, created = await register_group(
            session,
            user,
            "telegram",
            str(chat.id),
            title,
            ctx.clock.now(),
            invite_mode=mode,
            chat_type="channel",
        )
    except RuleError as e:
        out.add(message.reply(t(e.key, lang, **e.params)))
        return
    out.add(
        message.reply(
            t(
                "setup_channel_ok" if created else "setup_channel_refreshed",
                lang,
                title=group.title,
                group_id=group.id,
                mode=group.invite_mode,
                prices=example_prices(ctx.providers.values()),
            )
        )
    )


async def starlink(
    message: Message,
    out: Replies,
    command: CommandObject,
    bot: Bot,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    """/starlink <channel> <price>XTR [name]: Telegram's own Star subscription link."""
    if user is None:
        return
    try:
        args = parse_starlink_args(command.args, STAR_PRICE_MAX)
        group = await star_link_channel(session, user, args.group_ref, ctx.admin_ids)
    except (ArgError, RuleError) as e:
        reason = t(e.key, lang, **e.params)
        out.add(message.reply(f"{reason}\n{t('usage_starlink', lang, max=STAR_PRICE_MAX)}"))
        return
    # Telegram first, then our record: a link whose record is lost (a failed commit) still
    # works, and its joiners are still recognised (their invite_link says it is a paid one).
    try:
        link = await bot.create_chat_subscription_invite_link(
            chat_id=int(group.chat_id),
            subscription_period=STAR_PERIOD_SECONDS,
            subscription_price=args.stars,
            name=args.name,
        )
    except (TelegramBadRequest, TelegramForbiddenError) as e:
        out.add(message.reply(t("starlink_refused", lang, group=group.title, reason=e.message)))
        return
    await record_star_link(
        session, user, group, link.invite_link, args.name, args.stars, ctx.clock.now()
    )
    out.add(
        message.answer(
            t(
                "starlink_created",
                lang,
                group=group.title,
                group_id=group.id,
                price=args.stars,
                link=link.invite_link,
            )
        )
    )
