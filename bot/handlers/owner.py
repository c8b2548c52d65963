"""Owner's access tools in the private chat: /members, /grant, /revoke, /stats, /export.

Only a group's owner or a configured admin id may use them on a group (find_managed_group).
Every bad argument gets one line saying why, then the usage, and changes nothing.
"""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import BufferedInputFile, Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot.commands import ArgError, parse_group_arg, parse_revoke_args
from bot.context import BotContext
from bot.i18n import t
from bot.owner_actions import (
    OwnerEnv,
    Said,
    grant_said,
    members_said,
    renewal_stopper,
    revoke_said,
    stats_text,
)
from bot.replies import Replies
from membership.admin import find_user
from membership.catalog import find_managed_group
from membership.errors import RuleError
from membership.policy import set_refund_policy, whitelist
from membership.reports import export_group
from storage.models import ChatGroup, User

_PRIVATE = F.chat.type == "private"
COMMANDS = (
    "members",
    "grant",
    "revoke",
    "stats",
    "export",
    "refundpolicy",
    "whitelist",
    "unwhitelist",
)


def router() -> Router:
    r = Router(name="owner")
    r.message.register(members, Command("members"), _PRIVATE)
    r.message.register(grant, Command("grant"), _PRIVATE)
    r.message.register(revoke, Command("revoke"), _PRIVATE)
    r.message.register(stats, Command("stats"), _PRIVATE)
    r.message.register(export, Command("export"), _PRIVATE)
    r.message.register(refund_policy, Command("refundpolicy"), _PRIVATE)
    r.message.register(whitelist_cmd, Command("whitelist", "unwhitelist"), _PRIVATE)
    r.message.register(private_only, Command(*COMMANDS))
    return r


async def private_only(message: Message, out: Replies, lang: str) -> None:
    out.add(message.reply(t("private_only", lang)))


async def _refuse(
    message: Message, out: Replies, lang: str, usage: str, err: ArgError | RuleError
) -> None:
    reason = t(err.key, lang, **err.params)
    out.add(message.reply(f"{reason}\n{t(usage, lang)}"))


async def _managed_group(
    message: Message,
    out: Replies,
    command: CommandObject,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
    usage: str,
) -> ChatGroup | None:
    """The `<group>` argument, if the sender may manage it; else say why, with the usage."""
    if user is None:
        return None
    try:
        return await find_managed_group(session, user, parse_group_arg(command.args), ctx.admin_ids)
    except (ArgError, RuleError) as e:
        await _refuse(message, out, lang, usage, e)
        return None


def _env(ctx: BotContext, lang: str) -> OwnerEnv:
    return OwnerEnv("telegram", ctx.providers, ctx.admin_ids, ctx.clock.now(), lang)


def _say(message: Message, out: Replies, said: Said) -> None:
    out.add(message.reply(said.text) if said.refused else message.answer(said.text))


async def members(
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
    _say(message, out, await members_said(session, user, command.args, _env(ctx, lang)))


async def grant(
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
    said = await grant_said(session, user, command.args, _env(ctx, lang), bot_name=ctx.bot_username)
    _say(message, out, said)


async def revoke(
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
    stop_renewal = renewal_stopper(session, ctx.db, ctx.providers, ctx.clock.now())
    said = await revoke_said(session, user, command.args, _env(ctx, lang), stop_renewal)
    _say(message, out, said)


async def stats(
    message: Message,
    out: Replies,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    if user is None:
        return
    out.add(message.answer(await stats_text(session, user, _env(ctx, lang))))


async def export(
    message: Message,
    out: Replies,
    command: CommandObject,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    group = await _managed_group(message, out, command, ctx, session, user, lang, "usage_export")
    if group is None:
        return
    now = ctx.clock.now()
    exp = await export_group(session, group.id or 0)
    out.add(
        message.answer_document(
            BufferedInputFile(exp.data, filename=f"gatepass-group{group.id}-{now:%Y%m%d}.csv"),
            caption=t(
                "export_caption",
                lang,
                group=group.title,
                group_id=group.id,
                memberships=t("count_memberships", lang, count=exp.members),
                orders=t("count_orders", lang, count=exp.orders),
                date=f"{now:%Y-%m-%d %H:%M} UTC",
            ),
        )
    )


async def refund_policy(
    message: Message,
    out: Replies,
    command: CommandObject,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    """/refundpolicy [revoke|keep]: what a refund or dispute does to the access it paid for."""
    if user is None:
        return
    if command.args:
        try:
            await set_refund_policy(session, user, command.args, ctx.clock.now())
        except RuleError as e:
            out.add(
                message.reply(f"{t(e.key, lang, **e.params)}\n{t('usage_refund_policy', lang)}")
            )
            return
    out.add(message.answer(t(f"refund_policy_{user.refund_policy}", lang)))


async def whitelist_cmd(
    message: Message,
    out: Replies,
    command: CommandObject,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    """/whitelist <user> <group> lets someone stay without paying; /unwhitelist undoes it."""
    if user is None:
        return
    add = command.command == "whitelist"
    try:
        args = parse_revoke_args(command.args)
        group = await find_managed_group(session, user, args.group_ref, ctx.admin_ids)
        ident = args.user.platform_user_id
        if ident is None:
            known = await find_user(session, "telegram", args.user)
            if known is None:
                raise RuleError("user_unknown", ref=str(args.user))
            ident = known.platform_user_id
    except (ArgError, RuleError) as e:
        await _refuse(message, out, lang, "usage_whitelist", e)
        return
    changed = await whitelist(session, user, group, ident, ctx.clock.now(), add=add)
    key = ("whitelist_added" if add else "whitelist_removed") if changed else "whitelist_same"
    out.add(message.answer(t(key, lang, user=str(args.user), group=group.title)))
