"""Buyer browsing: /start (and deep link g_<group>) -> groups -> plans -> payment methods."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import CommandObject, CommandStart
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from sqlalchemy.ext.asyncio import AsyncSession

from billing.provider import offers
from bot.context import BotContext
from bot.handlers.callbacks import GroupCb, PayCb, PlanCb
from bot.i18n import duration_text, has, t
from bot.replies import Replies
from membership.catalog import PlanView, get_group, get_plan, groups_for_sale, plans_for_group
from storage.models import User


def router() -> Router:
    r = Router(name="catalog")
    r.message.register(start, CommandStart(), F.chat.type == "private")
    r.callback_query.register(show_group, GroupCb.filter())
    r.callback_query.register(show_plan, PlanCb.filter())
    return r


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
    if not rows:
        out.add(query.message.answer(t("no_methods", lang)))
        return
    out.add(
        query.message.answer(
            t("pick_method", lang, plan=v.plan.title, duration=_duration(v, lang)),
            reply_markup=InlineKeyboardMarkup(inline_keyboard=rows),
        )
    )
