"""Telegram Stars updates: the pre-checkout question, payments, refunds, subscription changes.

Money updates are applied in the update's own transaction (the one that stores its
telegram_update row), through the webhooks' path (billing.ingest.apply_notice): the update
is on disk before Telegram hears it was handled, and a redelivered update or a second
update about the same charge changes nothing. The grant's notify / deliver_invite outbox
rows tell the buyer, as after a webhook.
"""

from __future__ import annotations

import json
import logging

from aiogram import Bot, F, Router
from aiogram.types import BotSubscriptionUpdated, Message, PreCheckoutQuery, TelegramObject, Update
from sqlalchemy.ext.asyncio import AsyncSession

from billing.errors import InvalidEvent, MalformedEvent
from billing.events import WebhookNotice
from billing.ingest import apply_notice, record_unusable
from billing.stars import (
    CURRENCY,
    PROVIDER,
    complete,
    notice_from_body,
    pre_checkout_refusal,
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


async def paid(
    message: Message, event_update: Update, bot: Bot, ctx: BotContext, session: AsyncSession
) -> None:
    sp = message.successful_payment
    assert sp is not None
    body = _body("successful_payment", sp)
    if sp.currency != CURRENCY:
        # Only Stars are taken in the chat; money in another currency is kept on record.
        await _unusable(session, ctx, bot, event_update, body, f"a {sp.currency} payment")
        return
    await _apply_body(session, ctx, bot, event_update, body)


async def refunded(
    message: Message, event_update: Update, bot: Bot, ctx: BotContext, session: AsyncSession
) -> None:
    """A Star payment went back to the buyer: by our refund, or by Telegram itself."""
    rp = message.refunded_payment
    assert rp is not None
    await _apply_body(session, ctx, bot, event_update, _body("refunded_payment", rp))


def _body(field: str, value: TelegramObject) -> bytes:
    """The message's payment field as Telegram sent it: what billing.stars reads, and what
    is kept when it cannot be applied."""
    return json.dumps({field: value.model_dump(mode="json", exclude_none=True)}).encode()


async def _apply_body(
    session: AsyncSession, ctx: BotContext, bot: Bot, event_update: Update, body: bytes
) -> None:
    try:
        notice = notice_from_body(body)
    except (InvalidEvent, MalformedEvent) as e:
        await _unusable(session, ctx, bot, event_update, body, str(e))
        return
    await _apply(session, ctx, notice)


async def _unusable(
    session: AsyncSession, ctx: BotContext, bot: Bot, event_update: Update, body: bytes, why: str
) -> None:
    """Money news we cannot apply is never dropped: kept with its error, in the update's
    transaction, for a human (and `gatepass webhooks replay stars update:<bot>:<update>`)."""
    event_id = f"update:{bot.id}:{event_update.update_id}"
    log.error("stars update %s cannot be applied (%s); kept for replay", event_id, why)
    kind = next(iter(json.loads(body)))
    await record_unusable(session, PROVIDER, event_id, kind, why, body, ctx.clock.now())


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
