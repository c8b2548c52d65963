"""Telegram Stars updates: the pre-checkout question, payments, refunds, subscription changes.

Money updates are applied in the update's own transaction (the one that stores its
telegram_update row), through the webhooks' path (billing.ingest.apply_notice): the update
is on disk before Telegram hears it was handled, and a redelivered update or a second
update about the same charge changes nothing. The grant's notify / deliver_invite outbox
rows tell the buyer, as after a webhook.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from aiogram import Bot, F, Router
from aiogram.types import BotSubscriptionUpdated, Message, PreCheckoutQuery, Update
from sqlalchemy.ext.asyncio import AsyncSession

from billing.errors import InvalidEvent
from billing.events import WebhookNotice
from billing.ingest import apply_notice
from billing.stars import (
    CURRENCY,
    PROVIDER,
    StarsPayment,
    complete,
    payment_notice,
    pre_checkout_refusal,
    refund_notice,
    subscription_notice,
)
from bot.context import BotContext
from bot.i18n import t
from bot.replies import Replies

log = logging.getLogger(__name__)


def router() -> Router:
    r = Router(name="stars")
    r.pre_checkout_query.register(pre_checkout)
    r.message.register(paid, F.successful_payment)
    r.message.register(refunded, F.refunded_payment)
    r.subscription.register(subscription_changed)
    return r


async def pre_checkout(
    query: PreCheckoutQuery, out: Replies, session: AsyncSession, lang: str
) -> None:
    """Answered from one read, well inside Telegram's 10 seconds; the answer goes out
    after the update's commit (the middleware sends it, retrying briefly)."""
    refusal = await pre_checkout_refusal(
        session,
        query.invoice_payload,
        str(query.from_user.id),
        query.currency,
        query.total_amount,
    )
    if refusal is None:
        out.add(query.answer(ok=True))
    else:
        log.info("pre-checkout of %s refused: %s", query.invoice_payload, refusal)
        out.add(query.answer(ok=False, error_message=t(refusal, lang)))


async def _apply(session: AsyncSession, ctx: BotContext, notice: WebhookNotice) -> None:
    notice = await complete(session, notice)
    result = await apply_notice(session, PROVIDER, notice, ctx.clock.now())
    if not result.ok:
        log.warning("stars %s %s: %s", notice.event_type, notice.event_id, result.error)


async def paid(message: Message, ctx: BotContext, session: AsyncSession) -> None:
    sp = message.successful_payment
    assert sp is not None
    if sp.currency != CURRENCY:
        log.warning("a %s payment arrived, but only Stars are taken in the chat", sp.currency)
        return
    try:
        notice = payment_notice(
            StarsPayment(
                charge_id=sp.telegram_payment_charge_id,
                invoice_payload=sp.invoice_payload,
                total_amount=sp.total_amount,
                currency=sp.currency,
                is_recurring=bool(sp.is_recurring),
                is_first_recurring=bool(sp.is_first_recurring),
                subscription_expiration=(
                    datetime.fromtimestamp(sp.subscription_expiration_date, UTC)
                    if sp.subscription_expiration_date
                    else None
                ),
            )
        )
    except InvalidEvent as e:
        # Not an invoice of ours (we never make such a payload): nothing to settle.
        log.error("stars payment %s cannot be used: %s", sp.telegram_payment_charge_id, e)
        return
    await _apply(session, ctx, notice)


async def refunded(message: Message, ctx: BotContext, session: AsyncSession) -> None:
    """A Star payment went back to the buyer: by our refund, or by Telegram itself."""
    rp = message.refunded_payment
    assert rp is not None
    try:
        notice = refund_notice(
            rp.telegram_payment_charge_id, rp.invoice_payload, rp.total_amount, rp.currency
        )
    except InvalidEvent as e:
        log.error("stars refund %s cannot be used: %s", rp.telegram_payment_charge_id, e)
        return
    await _apply(session, ctx, notice)


async def subscription_changed(
    event: BotSubscriptionUpdated,
    event_update: Update,
    bot: Bot,
    ctx: BotContext,
    session: AsyncSession,
) -> None:
    """canceled / active: auto-renew off / on; failed: the buyer is told."""
    try:
        notice = subscription_notice(
            bot.id, event_update.update_id, event.invoice_payload, str(event.state)
        )
    except InvalidEvent as e:
        log.error("stars subscription update %s cannot be used: %s", event_update.update_id, e)
        return
    await _apply(session, ctx, notice)
