"""Buyer browsing: /start (and deep link g_<group>) -> groups -> plans -> payment methods."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import CommandObject, CommandStart
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from sqlalchemy.ext.asyncio import AsyncSession

from billing.provider import offers
from billing.wallet_checkout import WalletSplit, plan_split
from bot.access_texts import wallet_parts
from bot.context import BotContext
from bot.handlers.callbacks import GroupCb, PayCb, PlanCb, WalletPayCb
from bot.i18n import duration_text, has, t
from bot.replies import Replies
from membership.catalog import PlanView, get_group, get_plan, groups_for_sale, plans_for_group
from storage.models import User, stored_id
from storage.money import Money


def router() -> Router:
    r = Router(name="catalog")
    r.message.register(start, CommandStart(), F.chat.type == "private")
    r.callback_query.register(show_group, GroupCb.filter())
    r.callback_query.register(show_plan, PlanCb.filter())
    return r


async def _wallet_rows(
    session: AsyncSession, ctx: BotContext, v: PlanView, user_id: int, lang: str
) -> list[list[InlineKeyboardButton]]:
    """The wallet choices, first: "Wallet" when balance and points cover a price, else
    "Wallet + <method>" for each method that takes the rest. None for a renewing plan (a
    subscription charges the provider each period) or when the wallet has nothing to give."""
    rules = ctx.wallet_rules
    if rules is None or v.plan.recurring:
        return []
    rows: list[list[InlineKeyboardButton]] = []
    shown_at = int(ctx.clock.now().timestamp() * 1000)
    for price in v.prices:
        split = await plan_split(session, user_id, price, rules, use_balance=True, use_points=True)
        if split.wallet_minor == 0 and split.points_used == 0:
            continue
        part = wallet_part_text(split, price.currency, lang)
        if split.remainder_minor == 0:
            choices = [("wallet", t("method_wallet", lang, part=part))]
        else:
            rest = str(Money(split.remainder_minor, price.currency))
            choices = [
                (
                    name,
                    t(
                        "method_wallet_plus",
                        lang,
                        part=part,
                        method=method_name(name, lang),
                        rest=rest,
                    ),
                )
                for name, provider in ctx.providers.items()
                if name != "stars" and offers(provider, price.currency, recurring=False)
            ]
        rows += [
            [
                InlineKeyboardButton(
                    text=text,
                    callback_data=WalletPayCb(
                        plan_id=v.plan.id or 0, provider=name, currency=price.currency, at=shown_at
                    ).pack(),
                )
            ]
            for name, text in choices
        ]
    return rows


def wallet_part_text(split: WalletSplit, currency: str, lang: str) -> str:
    """ "5.00 CNY balance + 200 points (2.00 CNY)": what the wallet pays."""
    return " + ".join(
        wallet_parts(split.wallet_minor, split.points_used, split.points_minor, currency, lang)
    )


def method_name(provider: str, lang: str) -> str:
    """A provider as buyers know it ("WeChat Pay"), else its config name."""
    key = f"provider_name_{provider}"
    return t(key, lang) if has(key) else provider


def _duration(v: PlanView, lang: str) -> str:
    return duration_text(v.plan.duration_days, lang)


async def _plans_message(
    session: AsyncSession, group_id: int, lang: str
) -> tuple[str, InlineKeyboardMarkup | None]:
    group = await get_group(session, group_id)
    if group is None:
        return t("group_gone", lang), None
    views = await plans_for_group(session, group_id)
    if not views:
        return t("no_plans", lang, group=group.title), None
    rows = [
        [
            InlineKeyboardButton(
                text=(
                    f"{v.plan.title} · {_duration(v, lang)} · "
                    f"{' / '.join(str(p) for p in v.prices)}"
                ),
                callback_data=PlanCb(plan_id=v.plan.id or 0).pack(),
            )
        ]
        for v in views
    ]
    return t("pick_plan", lang, group=group.title), InlineKeyboardMarkup(inline_keyboard=rows)


async def start(
    message: Message,
    out: Replies,
    command: CommandObject,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    arg = (command.args or "").strip()
    if arg.startswith("g_") and arg[2:].isdigit():
        text, kb = await _plans_message(session, int(arg[2:]), lang)
        out.add(message.answer(text, reply_markup=kb))
        return
    groups = await groups_for_sale(session, "telegram")
    if not groups:
        out.add(message.answer(t("no_groups", lang)))
        return
    kb = InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=g.title, callback_data=GroupCb(group_id=g.id or 0).pack())]
            for g in groups
        ]
    )
    name = (user.first_name if user else None) or ""
    out.add(message.answer(t("welcome", lang, name=name), reply_markup=kb))


async def show_group(
    query: CallbackQuery, out: Replies, callback_data: GroupCb, session: AsyncSession, lang: str
) -> None:
    text, kb = await _plans_message(session, callback_data.group_id, lang)
    out.add(query.answer())
    if query.message is not None:
        out.add(query.message.answer(text, reply_markup=kb))


async def show_plan(
    query: CallbackQuery,
    out: Replies,
    callback_data: PlanCb,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    out.add(query.answer())
    if query.message is None:
        return
    v = await get_plan(session, callback_data.plan_id)
    if v is None:
        out.add(query.message.answer(t("plan_gone", lang)))
        return
    rows = []
    for name, provider in ctx.providers.items():
        label = f"method_{name}" if has(f"method_{name}") else None
        for price in v.prices:
            if not offers(provider, price.currency, recurring=v.plan.recurring):
                continue
            text = t(label, lang, price=str(price)) if label else f"{name} · {price}"
            rows.append(
                [
                    InlineKeyboardButton(
                        text=text,
                        callback_data=PayCb(
                            plan_id=v.plan.id or 0, provider=name, currency=price.currency
                        ).pack(),
                    )
                ]
            )
    if user is not None:
        rows = await _wallet_rows(session, ctx, v, stored_id(user), lang) + rows
    if not rows:
        out.add(query.message.answer(t("no_methods", lang)))
        return
    out.add(
        query.message.answer(
            t("pick_method", lang, plan=v.plan.title, duration=_duration(v, lang)),
            reply_markup=InlineKeyboardMarkup(inline_keyboard=rows),
        )
    )
