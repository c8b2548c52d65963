"""Owner's access tools in the private chat: /members, /grant, /revoke, /stats, /export.

Only a group's owner or a configured admin id may use them on a group (find_managed_group).
Every bad argument gets one line saying why, then the usage, and changes nothing.
"""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import BufferedInputFile, Message
from sqlalchemy.ext.asyncio import AsyncSession

from billing.subscriptions import cancel_auto_renew
from bot.commands import ArgError, parse_grant_args, parse_group_arg, parse_revoke_args
from bot.context import BotContext
from bot.i18n import t
from bot.replies import Replies
from membership.admin import display_name, find_user, grant_access, revocable, revoke_access
from membership.catalog import find_managed_group
from membership.errors import RuleError
from membership.policy import set_refund_policy, whitelist
from membership.reports import export_group, group_members, owner_stats
from storage.models import ChatGroup, User
from storage.money import Money

_PRIVATE = F.chat.type == "private"
MEMBERS_SHOWN = 50
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


def _money(amounts: list[Money], lang: str) -> str:
    return ", ".join(str(m) for m in amounts) or t("stats_no_money", lang)


async def members(
    message: Message,
    out: Replies,
    command: CommandObject,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    group = await _managed_group(message, out, command, ctx, session, user, lang, "usage_members")
    if group is None:
        return
    report = await group_members(session, group.id or 0, ctx.clock.now(), limit=MEMBERS_SHOWN)
    lines = [
        t(
            "members_header",
            lang,
            group=group.title,
            group_id=group.id,
            active=report.active,
            lifetime=report.lifetime,
            renewing=report.renewing,
            ended=report.ended,
        )
    ]
    if report.star:
        lines.append(t("members_star", lang, count=report.star))
    for u, m in report.members:
        who = display_name(u)
        if m.star_link and m.expires_at is not None:
            lines.append(t("members_line_star", lang, who=who, ends=m.expires_at))
        elif m.expires_at is None:
            lines.append(t("members_line_lifetime", lang, who=who))
        else:
            lines.append(
                t(
                    "members_line_renews" if m.auto_renew else "members_line",
                    lang,
                    who=who,
                    until=m.expires_at,
                )
            )
    if report.more > 0:
        lines.append(t("members_more", lang, more=report.more, group_id=group.id))
    out.add(message.answer("\n".join(lines)))


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
    try:
        args = parse_grant_args(command.args)
        group = await find_managed_group(session, user, args.group_ref, ctx.admin_ids)
        done = await grant_access(
            session, user, group, args.user, args.duration_days, ctx.clock.now()
        )
    except (ArgError, RuleError) as e:
        await session.rollback()
        await _refuse(message, out, lang, "usage_grant", e)
        return
    who = display_name(done.user)
    until = done.membership.expires_at
    text = t(
        "grant_done" if until else "grant_done_lifetime",
        lang,
        user=who,
        group=group.title,
        until=until,
    )
    if done.new_user:
        text += "\n" + t("grant_new_user", lang, user=who, bot=ctx.bot_username)
    out.add(message.answer(text))


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
    try:
        args = parse_revoke_args(command.args)
        group = await find_managed_group(session, user, args.group_ref, ctx.admin_ids)
        target, m = await revocable(session, group, args.user)
    except (ArgError, RuleError) as e:
        await _refuse(message, out, lang, "usage_revoke", e)
        return
    note = None
    if m.auto_renew and m.provider_subscription_id:
        # Stop the provider charging them first: once revoked, a renewal would take their
        # money and give nothing. cancel_auto_renew calls the provider with no transaction
        # open and uses sessions of its own, so ours gives its connection back first.
        target_id, membership_id, actor = target.id or 0, m.id, f"user:{user.id}"
        await session.commit()
        try:
            await cancel_auto_renew(
                ctx.db,
                ctx.providers,
                ctx.clock.now(),
                user_id=target_id,
                membership_id=membership_id,
                actor=actor,
            )
            note = "revoke_renewal_stopped"
        except RuleError as e:
            note = None if e.key == "cancel_nothing" else "revoke_renewal_kept"
    try:
        target, m = await revoke_access(session, user, group, args.user, ctx.clock.now())
    except RuleError as e:
        await session.rollback()
        await _refuse(message, out, lang, "usage_revoke", e)
        return
    text = t("revoke_done", lang, user=display_name(target), group=group.title)
    if note:
        text += "\n" + t(note, lang)
    out.add(message.answer(text))


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
    now = ctx.clock.now()
    # A configured admin manages every group, so sees every group's figures.
    admin = user.platform == "telegram" and user.platform_user_id in {str(i) for i in ctx.admin_ids}
    s = await owner_stats(session, None if admin else user.id, now)
    if not s.groups:
        out.add(message.answer(t("plans_none", lang)))
        return
    lines = [t("stats_header", lang, date=f"{now:%Y-%m-%d %H:%M} UTC")]
    for g, n in s.groups:
        lines.append(t("stats_group", lang, group_id=g.id, group=g.title, active=n))
        if s.star_members.get(g.id or 0):
            # Telegram collects and keeps these Stars: a count, never revenue.
            lines.append(t("stats_star", lang, count=s.star_members[g.id or 0]))
    lines.append(
        t(
            "stats_revenue",
            lang,
            total=_money(s.revenue, lang),
            recent=_money(s.revenue_recent, lang),
        )
    )
    if s.unexpected_count:
        lines.append(
            t("stats_unexpected", lang, count=s.unexpected_count, total=_money(s.unexpected, lang))
        )
    lines.append(t("stats_renewals", lang, renewals=s.renewals))
    rate = f"{s.churn:.0%}" if s.churn is not None else t("stats_no_rate", lang)
    lines.append(t("stats_churn", lang, ended=s.ended, start=s.active_at_start, rate=rate))
    out.add(message.answer("\n".join(lines)))


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
