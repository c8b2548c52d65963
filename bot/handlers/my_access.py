"""The buyer's own tools: /my (access, with renew, stop-renewal and invite buttons), /orders,
/cancel (stop auto-renew at the period's end through the provider)."""

from __future__ import annotations

from datetime import datetime

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from sqlalchemy.ext.asyncio import AsyncSession

from billing.subscriptions import cancel_auto_renew
from bot.access_texts import access_line, orders_lines, renewable, renews
from bot.context import BotContext
from bot.handlers.callbacks import GroupCb
from bot.i18n import t
from bot.replies import Replies
from membership.admin import resend_invite
from membership.errors import RuleError
from membership.grants import is_active
from membership.reports import Access, auto_renewing, user_accesses, user_orders
from storage.models import User

_PRIVATE = F.chat.type == "private"
ORDERS_SHOWN = 20


class StopRenewCb(CallbackData, prefix="myoff"):
    membership_id: int


class InviteCb(CallbackData, prefix="myinv"):
    membership_id: int


def router() -> Router:
    r = Router(name="my_access")
    r.message.register(my, Command("my"), _PRIVATE)
    r.message.register(orders, Command("orders"), _PRIVATE)
    r.message.register(cancel, Command("cancel"), _PRIVATE)
    r.message.register(private_only, Command("my", "orders", "cancel"))
    r.callback_query.register(stop_renew, StopRenewCb.filter())
    r.callback_query.register(send_invite, InviteCb.filter())
    return r


async def private_only(message: Message, out: Replies, lang: str) -> None:
    out.add(message.reply(t("private_only", lang)))


def _buttons(a: Access, now: datetime, lang: str) -> list[InlineKeyboardButton]:
    m, g = a.membership, a.group
    row = []
    if is_active(m, now) and g.active:
        row.append(
            InlineKeyboardButton(
                text=t("btn_invite", lang, group=g.title),
                callback_data=InviteCb(membership_id=m.id or 0).pack(),
            )
        )
    if renews(m):
        row.append(
            InlineKeyboardButton(
                text=t("btn_stop_renew", lang, group=g.title),
                callback_data=StopRenewCb(membership_id=m.id or 0).pack(),
            )
        )
    elif renewable(a):  # lifetime: no renewal
        row.append(
            InlineKeyboardButton(
                text=t("btn_renew", lang, group=g.title),
                callback_data=GroupCb(group_id=g.id or 0).pack(),
            )
        )
    return row


async def my(
    message: Message,
    out: Replies,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    if user is None:
        return
    accesses = await user_accesses(session, user.id or 0)
    if not accesses:
        out.add(message.answer(t("my_none", lang)))
        return
    now = ctx.clock.now()
    lines = [t("my_header", lang)] + [access_line(a, now, lang) for a in accesses]
    rows = [row for a in accesses if (row := _buttons(a, now, lang))]
    out.add(
        message.answer(
            "\n".join(lines),
            reply_markup=InlineKeyboardMarkup(inline_keyboard=rows) if rows else None,
        )
    )


async def orders(
    message: Message, out: Replies, session: AsyncSession, user: User | None, lang: str
) -> None:
    if user is None:
        return
    shown, total = await user_orders(session, user.id or 0, limit=ORDERS_SHOWN)
    if not shown:
        out.add(message.answer(t("orders_none", lang)))
        return
    lines = orders_lines(shown, total, lang)
    out.add(message.answer("\n".join(lines)))


async def _stop(
    target: Message,
    out: Replies,
    ctx: BotContext,
    session: AsyncSession,
    user: User,
    lang: str,
    membership_id: int,
) -> None:
    user_id = user.id or 0
    # cancel_auto_renew asks the provider with no transaction open and uses sessions of its
    # own: hand our connection back first (on SQLite there is only one).
    await session.commit()
    try:
        done = await cancel_auto_renew(
            ctx.db, ctx.providers, ctx.clock.now(), user_id=user_id, membership_id=membership_id
        )
    except RuleError as e:
        out.add(target.answer(t(e.key, lang, **e.params)))
        return
    out.add(target.answer(t("cancel_done", lang, group=done.group, until=done.until)))


async def cancel(
    message: Message,
    out: Replies,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    if user is None:
        return
    renewing = await auto_renewing(session, user.id or 0)
    # One subscription may carry several groups (a bundle): one choice per subscription.
    subs: dict[str, list[Access]] = {}
    for a in renewing:
        subs.setdefault(a.membership.provider_subscription_id or "", []).append(a)
    if not subs:
        out.add(message.answer(t("cancel_none", lang)))
        return
    if len(subs) == 1:
        ((first, *_),) = subs.values()
        await _stop(message, out, ctx, session, user, lang, first.membership.id or 0)
        return
    kb = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=t("btn_stop_renew", lang, group=", ".join(a.group.title for a in group)),
                    callback_data=StopRenewCb(membership_id=group[0].membership.id or 0).pack(),
                )
            ]
            for group in subs.values()
        ]
    )
    out.add(message.answer(t("cancel_pick", lang), reply_markup=kb))


async def stop_renew(
    query: CallbackQuery,
    out: Replies,
    callback_data: StopRenewCb,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    out.add(query.answer())
    if user is None or not isinstance(query.message, Message):
        return
    await _stop(query.message, out, ctx, session, user, lang, callback_data.membership_id)


async def send_invite(
    query: CallbackQuery,
    out: Replies,
    callback_data: InviteCb,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    out.add(query.answer())
    if user is None or not isinstance(query.message, Message):
        return
    try:
        group = await resend_invite(session, user, callback_data.membership_id, ctx.clock.now())
    except RuleError as e:
        out.add(query.message.answer(t(e.key, lang, **e.params)))
        return
    out.add(query.message.answer(t("invite_coming", lang, group=group.title)))
