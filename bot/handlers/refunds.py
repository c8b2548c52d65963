"""Owner refunds: the one-tap refund of an unexpected charge (the button on "paid twice",
"paid after a failed attempt" and "wrong amount" notices) and `/refund <order>`, the
order's own money back (billing/order_refunds.py)."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from billing.payments import REFUND_CALLBACK_PREFIX
from billing.refunds import request_extra_refund
from bot.context import BotContext
from bot.i18n import t
from bot.owner_actions import OwnerEnv, refund_said, refundable
from bot.replies import Replies
from membership.errors import RuleError
from storage.models import User

_PRIVATE = F.chat.type == "private"


class RefundExtraCb(CallbackData, prefix=REFUND_CALLBACK_PREFIX):
    payment_id: int  # our payment row id (billing.payments.refund_button)


def router() -> Router:
    r = Router(name="refunds")
    r.callback_query.register(refund_extra, RefundExtraCb.filter())
    r.message.register(refund_order, Command("refund"), _PRIVATE)
    r.message.register(private_only, Command("refund"))
    return r


async def private_only(message: Message, out: Replies, lang: str) -> None:
    out.add(message.reply(t("private_only", lang)))


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
    try:
        asked = await request_extra_refund(
            session,
            user,
            callback_data.payment_id,
            ctx.clock.now(),
            refundable=refundable(ctx.providers),
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


async def refund_order(
    message: Message,
    out: Replies,
    command: CommandObject,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    """/refund <order>: the order's own money back, through the provider's API."""
    if user is None:
        return
    env = OwnerEnv("telegram", ctx.providers, ctx.admin_ids, ctx.clock.now(), lang)
    said = await refund_said(session, user, command.args, env)
    out.add(message.reply(said.text) if said.refused else message.answer(said.text))
