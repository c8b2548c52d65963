"""The owner's one-tap refund of an unexpected charge (the button on "paid twice", "paid
after a failed attempt" and "wrong amount" notices)."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from billing.payments import REFUND_CALLBACK_PREFIX
from billing.provider import Refunder
from billing.refunds import request_extra_refund
from bot.context import BotContext
from bot.i18n import t
from bot.replies import Replies
from membership.errors import RuleError
from storage.models import User


class RefundExtraCb(CallbackData, prefix=REFUND_CALLBACK_PREFIX):
    payment_id: int  # our payment row id (billing.payments.refund_button)


def router() -> Router:
    r = Router(name="refunds")
    r.callback_query.register(refund_extra, RefundExtraCb.filter())
    return r


async def refund_extra(
    query: CallbackQuery,
    out: Replies,
    callback_data: RefundExtraCb,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    out.add(query.answer())
    if user is None or not isinstance(query.message, Message):
        return
    refundable = {name for name, p in ctx.providers.items() if isinstance(p, Refunder)}
    try:
        asked = await request_extra_refund(
            session, user, callback_data.payment_id, ctx.clock.now(), refundable=refundable
        )
    except RuleError as e:
        await session.rollback()
        out.add(query.message.answer(t(e.key, lang, **e.params)))
        return
    out.add(
        query.message.answer(
            t("refund_requested", lang, amount=str(asked.money), order_no=asked.order_no)
        )
    )
