"""Telegram Stars payments as ledger events, and the pre-checkout rules.

Stars money does not come by webhook: Telegram sends it to the bot as updates (a
`successful_payment` message, a `refunded_payment` message, a `subscription` update). The
bot reads the fields (bot/handlers/stars.py) and these pure functions turn them into the
same provider-neutral PaymentEvent a webhook is turned into, applied through the same path
(billing.ingest.apply_notice) in the update's own transaction.

Event ids, so every way a fact reaches us dedupes with the others:
- a payment: its `telegram_payment_charge_id`, which is also the id of the bot's incoming
  StarTransaction (getStarTransactions), so a payment found by reconciliation is the same
  event as its `successful_payment` message;
- a refund: `refund:<charge id>`, whether our refund call or Telegram's `refunded_payment`
  message reports it;
- a subscription update: `subscription:<bot id>:<update id>` (update ids are per bot; the
  update's own telegram_update row dedupes its redelivery first).

A Stars subscription is named by its first payment's charge id (what
editUserStarSubscription takes); later payments and subscription updates name only the
order (the invoice payload), so `complete` finds the subscription through the order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from billing.errors import MalformedEvent
from billing.events import EventKind, PaymentEvent, WebhookNotice
from storage.models import Membership, Order, Payment, User

PROVIDER = "stars"
CURRENCY = "XTR"
# Telegram Stars subscriptions renew every 30 days: createInvoiceLink's subscription_period
# must be exactly this many seconds.
SUBSCRIPTION_PERIOD_DAYS = 30
SUBSCRIPTION_PERIOD_SECONDS = SUBSCRIPTION_PERIOD_DAYS * 24 * 3600
# The most a Stars subscription may cost per period (Bot API, createInvoiceLink).
SUBSCRIPTION_MAX_STARS = 10000


@dataclass(frozen=True)
class StarsPayment:
    """The fields of a SuccessfulPayment (or of the StarTransaction that records it)."""

    charge_id: str
    invoice_payload: str
    total_amount: int
    currency: str
    is_recurring: bool = False
    is_first_recurring: bool = False
    subscription_expiration: datetime | None = None


def payment_notice(p: StarsPayment, *, event_type: str = "successful_payment") -> WebhookNotice:
    """A Stars payment: the order's first payment (PAID) or a subscription's later one
    (RENEWED, to the new expiration). Raises InvalidEvent for fields the ledger cannot hold."""
    renewal = p.is_recurring and not p.is_first_recurring
    event = PaymentEvent(
        provider=PROVIDER,
        event_id=p.charge_id,
        event_type=event_type,
        kind=EventKind.RENEWED if renewal else EventKind.PAID,
        order_no=p.invoice_payload,
        amount_minor=p.total_amount,
        currency=p.currency.upper(),
        provider_payment_id=p.charge_id,
        # The first payment of a subscription names it; a renewal finds it (complete()).
        subscription_id=p.charge_id if p.is_recurring and p.is_first_recurring else None,
        period_end=p.subscription_expiration if p.is_recurring else None,
    )
    return WebhookNotice(event.event_id, event.event_type, event)


def notice_from_body(body: bytes) -> WebhookNotice:
    """The notice of a stored Stars message body: `{"successful_payment": {...}}` or
    `{"refunded_payment": {...}}` with Telegram's own field names (the bot keeps a message
    it could not apply in this form, so `gatepass webhooks replay stars` can apply it after
    a fix). Raises MalformedEvent, or InvalidEvent for values the ledger cannot hold."""
    try:
        data: Any = json.loads(body)
    except ValueError as e:
        raise MalformedEvent("not JSON") from e
    if not isinstance(data, dict):
        raise MalformedEvent("not a JSON object")
    paid, refunded = data.get("successful_payment"), data.get("refunded_payment")
    fields = paid if paid is not None else refunded
    if not isinstance(fields, dict):
        raise MalformedEvent("neither a successful_payment nor a refunded_payment")
    try:
        charge_id = fields["telegram_payment_charge_id"]
        payload, amount, currency = (
            fields["invoice_payload"],
            fields["total_amount"],
            fields["currency"],
        )
    except KeyError as e:
        raise MalformedEvent(f"missing field {e}") from None
    if not isinstance(currency, str):
        raise MalformedEvent("currency is not text")
    if refunded is not None:
        return refund_notice(charge_id, payload, amount, currency)
    expiration = fields.get("subscription_expiration_date")
    if expiration is not None and not isinstance(expiration, int):
        raise MalformedEvent("subscription_expiration_date is not a number")
    return payment_notice(
        StarsPayment(
            charge_id=charge_id,
            invoice_payload=payload,
            total_amount=amount,
            currency=currency,
            is_recurring=fields.get("is_recurring") is True,
            is_first_recurring=fields.get("is_first_recurring") is True,
            subscription_expiration=(
                datetime.fromtimestamp(expiration, UTC) if expiration else None
            ),
        )
    )


def refund_id(charge_id: str) -> str:
    return f"refund:{charge_id}"


def refund_notice(
    charge_id: str,
    invoice_payload: str,
    total_amount: int,
    currency: str,
    *,
    event_type: str = "refunded_payment",
) -> WebhookNotice:
    """A Star payment refunded (always in full): by our refundStarPayment call or by
    Telegram itself; the same event id either way."""
    rid = refund_id(charge_id)
    event = PaymentEvent(
        provider=PROVIDER,
        event_id=rid,
        event_type=event_type,
        kind=EventKind.REFUNDED,
        order_no=invoice_payload,
        amount_minor=total_amount,
        currency=currency.upper(),
        provider_payment_id=charge_id,
        reversal_id=rid,
        reversal_amount_minor=total_amount,
        payment_amount_minor=total_amount,
    )
    return WebhookNotice(event.event_id, event.event_type, event)


# BotSubscriptionUpdated.state -> what it means for auto-renew.
SUBSCRIPTION_STATES = ("canceled", "active", "failed")


def subscription_notice(
    bot_id: int, update_id: int, invoice_payload: str, state: str
) -> WebhookNotice:
    """A `subscription` update: canceled / active switch auto-renew off / on; failed (a
    renewal could not be charged) tells the buyer. The order is the invoice payload; the
    subscription, amount and currency are filled in from it (complete())."""
    event_id = f"subscription:{bot_id}:{update_id}"
    event_type = f"subscription.{state}"[:64]
    if state not in SUBSCRIPTION_STATES:
        return WebhookNotice(event_id, event_type, None)
    failed = state == "failed"
    event = PaymentEvent(
        provider=PROVIDER,
        event_id=event_id,
        event_type=event_type,
        kind=EventKind.PAYMENT_FAILED if failed else EventKind.SUBSCRIPTION_UPDATED,
        order_no=invoice_payload,
        amount_minor=0,
        currency=CURRENCY,
        provider_payment_id=None,
        cancel_at_period_end=None if failed else state == "canceled",
    )
    return WebhookNotice(event_id, event_type, event)


async def first_charge(session: AsyncSession, order_no: str) -> str | None:
    """The charge id of an order's own first Stars payment: its subscription's id."""
    return (
        await session.execute(
            select(col(Payment.provider_payment_id))
            .join(Order, col(Order.id) == col(Payment.order_id))
            .where(
                col(Order.order_no) == order_no,
                col(Payment.provider) == PROVIDER,
                col(Payment.kind) == "charge",
                col(Payment.extra).is_(False),
            )
            .order_by(col(Payment.id))
            .limit(1)
        )
    ).scalar_one_or_none()


async def _paid_by_a_later_payment(session: AsyncSession, order_no: str) -> bool:
    """The order is paid, by a Stars payment that named no subscription: a renewal that
    arrived before the subscription's first payment (its access carries no subscription)."""
    row = (
        await session.execute(
            select(col(Order.id), col(Order.user_id), col(Order.plan_id)).where(
                col(Order.order_no) == order_no,
                col(Order.provider) == PROVIDER,
                col(Order.status) == "paid",
            )
        )
    ).first()
    if row is None or await first_charge(session, order_no) is None:
        return False
    named = (
        await session.execute(
            select(col(Membership.id))
            .where(
                col(Membership.user_id) == row[1],
                col(Membership.plan_id) == row[2],
                col(Membership.provider_subscription_id).is_not(None),
            )
            .limit(1)
        )
    ).first()
    return named is None


async def complete(session: AsyncSession, notice: WebhookNotice) -> WebhookNotice:
    """Fill in what a Stars update does not carry: the subscription (the order's first
    charge) of a renewal or a subscription update, and a failed renewal's price."""
    e = notice.event
    if (
        e is not None
        and e.kind is EventKind.PAID
        and e.subscription_id
        and e.order_no
        and await _paid_by_a_later_payment(session, e.order_no)
    ):
        # A subscription's first payment after a later one paid the order (the first's
        # update was lost, and reconciliation did not find it in time): the order's own
        # money, and the name of its subscription, not a second payment of a paid order.
        event = replace(e, kind=EventKind.RENEWED, first_period=True)
        return WebhookNotice(notice.event_id, notice.event_type, event)
    if e is None or e.subscription_id or not e.order_no:
        return notice
    if e.kind not in (EventKind.RENEWED, EventKind.SUBSCRIPTION_UPDATED, EventKind.PAYMENT_FAILED):
        return notice
    sub = await first_charge(session, e.order_no)
    if sub is None:
        if e.kind is EventKind.RENEWED:
            return notice  # a renewal whose first payment we missed: it pays the order
        # A subscription we have no payment of (its first payment's update was lost, and
        # reconciliation will find it): on record, applied to nothing. Applied as it is, a
        # failure would read as a failed checkout and close the still-pending order.
        return WebhookNotice(notice.event_id, notice.event_type, None)
    event = replace(e, subscription_id=sub)
    if e.kind is EventKind.PAYMENT_FAILED:
        row = (
            await session.execute(
                select(col(Order.amount_minor), col(Order.currency)).where(
                    col(Order.order_no) == e.order_no
                )
            )
        ).first()
        if row is not None:
            event = replace(event, amount_minor=int(row[0]), currency=str(row[1]))
    return WebhookNotice(notice.event_id, notice.event_type, event)


# -- pre-checkout ------------------------------------------------------------------------------


async def pre_checkout_refusal(
    session: AsyncSession,
    order_no: str,
    platform_user_id: str,
    currency: str,
    total_amount: int,
) -> str | None:
    """Whether Telegram may take this payment: None when it may, else the message key of
    the reason. Reads only (Telegram waits at most 10 seconds for the answer): the order
    exists, is a Stars order still pending, is this user's, and costs exactly this."""
    row = (
        await session.execute(
            select(Order, col(User.platform), col(User.platform_user_id))
            .join(User, col(User.id) == col(Order.user_id))
            .where(col(Order.order_no) == order_no)
        )
    ).first()
    if row is None or row[0].provider != PROVIDER:
        return "stars_order_unknown"
    order, platform, owner_id = row
    if platform != "telegram" or owner_id != platform_user_id:
        return "stars_order_not_yours"
    if order.status != "pending":
        return "stars_order_not_pending"
    if (order.amount_minor, order.currency) != (total_amount, currency.upper()):
        return "stars_amount_changed"
    return None
