"""Owner commands: /setup in the group (a channel's: bot/handlers/channels.py); /addplan,
/addsub, /plans in the private chat."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot.commands import (
    ArgError,
    check_payable,
    example_prices,
    parse_plan_args,
    payable_currencies,
)
from bot.context import BotContext
from bot.handlers.channels import setup_channel
from bot.i18n import duration_text, t
from bot.replies import Replies
from membership.catalog import (
    TELEGRAM_INVITE_MODES,
    add_plan,
    find_managed_group,
    owner_groups,
    owner_plans,
    register_group,
)
from membership.channels import star_links
from membership.errors import RuleError
from membership.gateway import BotRights
from storage.models import User, stored_id

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


def usage(ctx: BotContext, lang: str, *, recurring: bool) -> str:
    """The /addplan or /addsub usage, suggesting only currencies that can be paid here."""
    currencies = ", ".join(payable_currencies(ctx.providers.values()))
    return t(
        "usage_addsub" if recurring else "usage_addplan",
        lang,
        prices=example_prices(ctx.providers.values()),
        currencies=currencies or t("currencies_none", lang),
    )


def default_title(days: int | None, lang: str, *, recurring: bool) -> str:
    if recurring:
        return t("title_subscription", lang, duration=duration_text(days, lang))
    if days is None:
        return t("title_access_lifetime", lang)
    return t("title_access", lang, duration=duration_text(days, lang))


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
    try:
        args = parse_plan_args(command.args, recurring=recurring)
        check_payable(args.prices, ctx.providers.values())
        groups = [
            await find_managed_group(session, user, ref, ctx.admin_ids) for ref in args.group_refs
        ]
        title = args.title or default_title(args.duration_days, lang, recurring=recurring)
        plan = await add_plan(
            session,
            user,
            groups,
            args.duration_days,
            args.prices,
            title,
            ctx.clock.now(),
            recurring=recurring,
        )
    except (ArgError, RuleError) as e:
        await session.rollback()
        reason = t(e.key, lang, **e.params)
        out.add(message.reply(f"{reason}\n{usage(ctx, lang, recurring=recurring)}"))
        return
    out.add(
        message.reply(
            t(
                "plan_added",
                lang,
                plan_id=plan.id,
                title=plan.title,
                duration=args.duration_text,
                recurring=t("recurring_suffix", lang) if recurring else "",
                prices=", ".join(str(p) for p in args.prices),
                groups=", ".join(f"#{g.id} {g.title}" for g in groups),
                buy_link=ctx.buy_link(groups[0].id or 0),
            )
        )
    )


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
    groups = await owner_groups(session, user)
    if not groups:
        out.add(message.answer(t("plans_none", lang)))
        return
    views = await owner_plans(session, user)
    links = await star_links(session, [stored_id(g) for g in groups])
    lines: list[str] = []
    for g in groups:
        label = "plans_channel" if g.chat_type == "channel" else "plans_group"
        lines.append(t(label, lang, group_id=g.id, group=g.title, mode=g.invite_mode))
        lines += [
            t("plans_star_link", lang, price=x.price_stars, link=x.link)
            for x in links
            if x.chat_group_id == g.id
        ]
        mine = [v for v in views if any(x.id == g.id for x in v.groups)]
        for v in mine:
            lines.append(
                t(
                    "plans_plan",
                    lang,
                    plan_id=v.plan.id,
                    title=v.plan.title,
                    duration=duration_text(v.plan.duration_days, lang),
                    recurring=t("recurring_suffix", lang) if v.plan.recurring else "",
                    prices=", ".join(str(p) for p in v.prices),
                )
            )
        if not mine:
            lines.append(
                t(
                    "plans_group_empty",
                    lang,
                    group_id=g.id,
                    prices=example_prices(ctx.providers.values()),
                )
            )
    out.add(message.answer("\n".join(lines)))
