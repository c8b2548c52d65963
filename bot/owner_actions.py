"""The owner commands' bodies, platform-neutral: /addplan, /plans, /members, /grant, /revoke,
/stats, /refund take the command's argument text and answer with text.

One copy for both front-ends: the aiogram handlers (bot/handlers/admin.py, owner.py,
refunds.py) and the WeChat conversation (bot/wechat/owner.py) call these, so the parsers,
the rules and the one-line refusals (reason, then usage; nothing changed) are the same. A
platform words a text its own way through `platform_key` (a WeChat usage names contact ids,
not @usernames).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing.order_refunds import request_order_refund
from billing.payments import WALLET
from billing.provider import PaymentProvider, Refunder
from billing.subscriptions import cancel_auto_renew
from bot.commands import (
    ArgError,
    check_payable,
    example_prices,
    parse_grant_args,
    parse_group_arg,
    parse_order_arg,
    parse_plan_args,
    parse_revoke_args,
    payable_currencies,
)
from bot.i18n import duration_text, has, t
from membership.admin import display_name, grant_access, revocable, revoke_access
from membership.catalog import add_plan, find_managed_group, owner_groups, owner_plans
from membership.channels import star_links
from membership.errors import RuleError
from membership.reports import group_members, owner_stats
from storage.db import Database
from storage.models import ChatGroup, Membership, User, stored_id
from storage.money import Money

MEMBERS_SHOWN = 50


@dataclass(frozen=True)
class Said:
    """An answer. `refused`: a one-line reason and the usage, nothing changed (Telegram
    sends it as a reply to the command)."""

    text: str
    refused: bool = False


@dataclass(frozen=True)
class OwnerEnv:
    platform: str  # where the owner is talking: picks the platform's own wording
    providers: Mapping[str, PaymentProvider]
    admin_ids: Sequence[int]
    now: datetime
    lang: str


# Stops a membership's auto-renewal at its provider before /revoke ends it. Returns the note
# key to add to the answer, or None.
StopRenewal = Callable[[User, Membership, User], Awaitable[str | None]]


def renewal_stopper(
    session: AsyncSession,
    db: Database,
    providers: Mapping[str, PaymentProvider],
    now: datetime,
) -> StopRenewal:
    """billing's cancel_auto_renew for /revoke: it calls the provider with no transaction
    open and uses sessions of its own, so `session` commits its work first."""

    async def stop(target: User, m: Membership, actor: User) -> str | None:
        target_id, membership_id, who = target.id or 0, m.id, f"user:{actor.id}"
        await session.commit()
        try:
            await cancel_auto_renew(
                db, providers, now, user_id=target_id, membership_id=membership_id, actor=who
            )
        except RuleError as e:
            return None if e.key == "cancel_nothing" else "revoke_renewal_kept"
        return "revoke_renewal_stopped"

    return stop


def platform_key(key: str, platform: str) -> str:
    """`wechat_<key>` on WeChat when the catalog has it (a text that names Telegram's ways:
    /start, @username), else `key`."""
    own = f"{platform}_{key}"
    return own if platform != "telegram" and has(own) else key


def text(env: OwnerEnv, key: str, **params: Any) -> str:
    return t(platform_key(key, env.platform), env.lang, **params)


def refusal(env: OwnerEnv, usage: str, err: ArgError | RuleError, **usage_params: Any) -> Said:
    return Said(f"{text(env, err.key, **err.params)}\n{text(env, usage, **usage_params)}", True)


def _money(amounts: list[Money], lang: str) -> str:
    return ", ".join(str(m) for m in amounts) or t("stats_no_money", lang)


# -- /addplan, /addsub, /plans -------------------------------------------------------------------


def plan_usage(providers: Iterable[PaymentProvider], lang: str, *, recurring: bool) -> str:
    """The /addplan or /addsub usage, suggesting only currencies that can be paid here."""
    providers = list(providers)
    currencies = ", ".join(payable_currencies(providers))
    return t(
        "usage_addsub" if recurring else "usage_addplan",
        lang,
        prices=example_prices(providers),
        currencies=currencies or t("currencies_none", lang),
    )


def default_title(days: int | None, lang: str, *, recurring: bool) -> str:
    if recurring:
        return t("title_subscription", lang, duration=duration_text(days, lang))
    if days is None:
        return t("title_access_lifetime", lang)
    return t("title_access", lang, duration=duration_text(days, lang))


async def add_plan_said(
    session: AsyncSession,
    user: User,
    args: str | None,
    env: OwnerEnv,
    buy_link: Callable[[ChatGroup], str],
    *,
    recurring: bool = False,
) -> Said:
    try:
        parsed = parse_plan_args(args, recurring=recurring)
        check_payable(parsed.prices, env.providers.values())
        groups = [
            await find_managed_group(session, user, ref, env.admin_ids) for ref in parsed.group_refs
        ]
        title = parsed.title or default_title(parsed.duration_days, env.lang, recurring=recurring)
        plan = await add_plan(
            session,
            user,
            groups,
            parsed.duration_days,
            parsed.prices,
            title,
            env.now,
            recurring=recurring,
        )
    except (ArgError, RuleError) as e:
        await session.rollback()
        reason = text(env, e.key, **e.params)
        return Said(
            f"{reason}\n{plan_usage(env.providers.values(), env.lang, recurring=recurring)}", True
        )
    return Said(
        text(
            env,
            "plan_added",
            plan_id=plan.id,
            title=plan.title,
            duration=parsed.duration_text,
            recurring=t("recurring_suffix", env.lang) if recurring else "",
            prices=", ".join(str(p) for p in parsed.prices),
            groups=", ".join(f"#{g.id} {g.title}" for g in groups),
            buy_link=buy_link(groups[0]),
        )
    )


async def plans_text(session: AsyncSession, user: User, env: OwnerEnv) -> str:
    groups = await owner_groups(session, user)
    if not groups:
        return text(env, "plans_none")
    views = await owner_plans(session, user)
    links = await star_links(session, [stored_id(g) for g in groups])
    lines: list[str] = []
    for g in groups:
        label = "plans_channel" if g.chat_type == "channel" else "plans_group"
        lines.append(t(label, env.lang, group_id=g.id, group=g.title, mode=g.invite_mode))
        lines += [
            t("plans_star_link", env.lang, price=x.price_stars, link=x.link)
            for x in links
            if x.chat_group_id == g.id
        ]
        mine = [v for v in views if any(x.id == g.id for x in v.groups)]
        for v in mine:
            lines.append(
                t(
                    "plans_plan",
                    env.lang,
                    plan_id=v.plan.id,
                    title=v.plan.title,
                    duration=duration_text(v.plan.duration_days, env.lang),
                    recurring=t("recurring_suffix", env.lang) if v.plan.recurring else "",
                    prices=", ".join(str(p) for p in v.prices),
                )
            )
        if not mine:
            lines.append(
                t(
                    "plans_group_empty",
                    env.lang,
                    group_id=g.id,
                    prices=example_prices(env.providers.values()),
                )
            )
    return "\n".join(lines)


# -- /members, /grant, /revoke, /stats ------------------------------------------------------------


async def managed_group(
    session: AsyncSession, user: User, args: str | None, env: OwnerEnv, usage: str
) -> ChatGroup | Said:
    """The `<group>` argument, if the sender may manage it; else the refusal."""
    try:
        return await find_managed_group(session, user, parse_group_arg(args), env.admin_ids)
    except (ArgError, RuleError) as e:
        return refusal(env, usage, e)


async def members_said(session: AsyncSession, user: User, args: str | None, env: OwnerEnv) -> Said:
    group = await managed_group(session, user, args, env, "usage_members")
    if isinstance(group, Said):
        return group
    lang = env.lang
    report = await group_members(session, group.id or 0, env.now, limit=MEMBERS_SHOWN)
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
    return Said("\n".join(lines))


async def grant_said(
    session: AsyncSession, user: User, args: str | None, env: OwnerEnv, *, bot_name: str
) -> Said:
    try:
        parsed = parse_grant_args(args, platform=env.platform)
        group = await find_managed_group(session, user, parsed.group_ref, env.admin_ids)
        done = await grant_access(session, user, group, parsed.user, parsed.duration_days, env.now)
    except (ArgError, RuleError) as e:
        await session.rollback()
        return refusal(env, "usage_grant", e)
    who = display_name(done.user)
    until = done.membership.expires_at
    said = text(
        env,
        "grant_done" if until else "grant_done_lifetime",
        user=who,
        group=group.title,
        until=until,
    )
    if done.new_user:
        # Who they must talk to first depends on the group's platform, not the owner's.
        key = platform_key("grant_new_user", group.platform)
        said += "\n" + t(key, env.lang, user=who, bot=bot_name)
    return Said(said)


async def revoke_said(
    session: AsyncSession,
    user: User,
    args: str | None,
    env: OwnerEnv,
    stop_renewal: StopRenewal | None,
) -> Said:
    try:
        parsed = parse_revoke_args(args, platform=env.platform)
        group = await find_managed_group(session, user, parsed.group_ref, env.admin_ids)
        target, m = await revocable(session, group, parsed.user)
    except (ArgError, RuleError) as e:
        return refusal(env, "usage_revoke", e)
    note = None
    if m.auto_renew and m.provider_subscription_id:
        # Stop the provider charging them first: once revoked, a renewal would take their
        # money and give nothing.
        note = await stop_renewal(target, m, user) if stop_renewal else "revoke_renewal_kept"
    try:
        target, m = await revoke_access(session, user, group, parsed.user, env.now)
    except RuleError as e:
        await session.rollback()
        return refusal(env, "usage_revoke", e)
    said = t("revoke_done", env.lang, user=display_name(target), group=group.title)
    if note:
        said += "\n" + t(note, env.lang)
    return Said(said)


async def stats_text(session: AsyncSession, user: User, env: OwnerEnv) -> str:
    lang, now = env.lang, env.now
    # A configured admin manages every group, so sees every group's figures.
    admin = user.platform == "telegram" and user.platform_user_id in {str(i) for i in env.admin_ids}
    s = await owner_stats(session, None if admin else user.id, now)
    if not s.groups:
        return text(env, "plans_none")
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
    if s.wallet_spent or s.points_spent:
        lines.append(
            t(
                "stats_wallet_spent",
                lang,
                balance=_money(s.wallet_spent, lang),
                points=_money(s.points_spent, lang),
            )
        )
    if s.topups_sold:
        lines.append(t("stats_topups", lang, total=_money(s.topups_sold, lang)))
    if s.outstanding:
        lines.append(t("stats_outstanding", lang, total=_money(s.outstanding, lang)))
    lines.append(t("stats_renewals", lang, renewals=s.renewals))
    rate = f"{s.churn:.0%}" if s.churn is not None else t("stats_no_rate", lang)
    lines.append(t("stats_churn", lang, ended=s.ended, start=s.active_at_start, rate=rate))
    return "\n".join(lines)


# -- /refund <order> ------------------------------------------------------------------------------


def refundable(providers: Mapping[str, PaymentProvider]) -> set[str]:
    """The configured providers that refund through their API."""
    return {name for name, p in providers.items() if isinstance(p, Refunder)}


async def refund_said(session: AsyncSession, user: User, args: str | None, env: OwnerEnv) -> Said:
    """/refund <order>: the order's own money back, through the provider's API."""
    try:
        order_no = parse_order_arg(args)
        asked = await request_order_refund(
            session,
            user,
            order_no,
            env.now,
            refundable=refundable(env.providers),
            admin_ids=env.admin_ids,
        )
    except (ArgError, RuleError) as e:
        await session.rollback()
        params = dict(e.params)
        if "status" in params:
            params["status"] = t(f"order_status_{params['status']}", env.lang)
        reason = text(env, e.key, **params)
        if isinstance(e, ArgError) or e.key == "order_refund_unknown":
            reason += "\n" + text(env, "usage_refund")
        return Said(reason, True)
    if asked.provider == WALLET:
        return Said(
            t("order_refund_wallet", env.lang, amount=str(asked.money), order_no=asked.order_no)
        )
    return Said(
        t("order_refund_requested", env.lang, amount=str(asked.money), order_no=asked.order_no)
    )
