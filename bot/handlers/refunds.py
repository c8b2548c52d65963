"""Owner refunds: the one-tap refund of an unexpected charge (the button on "paid twice",
"paid after a failed attempt" and "wrong amount" notices) and `/refund <order>`, the
order's own money back (billing/order_refunds.py)."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from billing.order_refunds import request_order_refund
from billing.payments import REFUND_CALLBACK_PREFIX
from billing.provider import Refunder
from billing.refunds import request_extra_refund
from bot.commands import ArgError, parse_order_arg
from bot.context import BotContext
from bot.i18n import t
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


def _refundable(ctx: BotContext) -> set[str]:
    """The configured providers that refund through their API."""
    return {name for name, p in ctx.providers.items() if isinstance(p, Refunder)}


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
            session, user, callback_data.payment_id, ctx.clock.now(), refundable=_refundable(ctx)
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
    try:
        order_no = parse_order_arg(command.args)
        asked = await request_order_refund(
            session,
            user,
            order_no,
            ctx.clock.now(),
            refundable=_refundable(ctx),
            admin_ids=ctx.admin_ids,
        )
    except (ArgError, RuleError) as e:
        await session.rollback()
        params = dict(e.params)
        if "status" in params:
            params["status"] = t(f"order_status_{params['status']}", lang)
        reason = t(e.key, lang, **params)
        if isinstance(e, ArgError) or e.key == "order_refund_unknown":
            reason += "\n" + t("usage_refund", lang)
        out.add(message.reply(reason))
        return
    out.add(
        message.answer(
            t("order_refund_requested", lang, amount=str(asked.money), order_no=asked.order_no)
        )
    )
