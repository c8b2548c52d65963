"""The payment-method button: create the order and show the provider's checkout."""

from __future__ import annotations

import logging

from aiogram import Router
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup
from sqlalchemy.ext.asyncio import AsyncSession

from billing.checkout import open_checkout
from billing.errors import PaymentError
from bot.context import BotContext
from bot.handlers.callbacks import PayCb
from bot.i18n import t
from bot.replies import Replies
from membership.catalog import get_plan
from storage.models import User
from storage.money import Money

log = logging.getLogger(__name__)


def router() -> Router:
    r = Router(name="checkout")
    r.callback_query.register(pay, PayCb.filter())
    return r


async def pay(
    query: CallbackQuery,
    out: Replies,
    callback_data: PayCb,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    out.add(query.answer())
    if query.message is None or user is None:
        return
    v = await get_plan(session, callback_data.plan_id)
    provider = ctx.providers.get(callback_data.provider)
    price = next((p for p in v.prices if p.currency == callback_data.currency), None) if v else None
    if v is None or provider is None or price is None or not provider.accepts(price.currency):
        out.add(query.message.answer(t("plan_gone", lang)))
        return
    try:
        started = await open_checkout(
            session,
            provider,
            user,
            v.plan,
            price,
            ctx.clock.now(),
            public_url=ctx.public_url,
            timeout=ctx.order_timeout,
        )
    except PaymentError as e:
        log.warning("checkout failed for plan %s via %s: %s", v.plan.id, provider.name, e)
        out.add(query.message.answer(t("checkout_failed", lang)))
        return
    order = started.order
    shown = Money(order.amount_minor, order.currency)
    if started.shown == "invoice_sent" or order.checkout_url is None:
        # The invoice is in the chat already (Telegram Stars): its own Pay button pays.
        out.add(
            query.message.answer(
                t("stars_invoice_sent", lang, order_no=order.order_no, plan=v.plan.title)
            )
        )
        return
    kb = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=t("btn_pay", lang, price=str(shown)), url=order.checkout_url
                )
            ]
        ]
    )
    out.add(
        query.message.answer(
            t("checkout_ready", lang, order_no=order.order_no, plan=v.plan.title, price=str(shown)),
            reply_markup=kb,
        )
    )
