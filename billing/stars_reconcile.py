"""Telegram Stars subscription payments missed while the bot was down, recovered from the
bot's Star transactions (getStarTransactions).

reconcile_pending finds the first payment of a pending order; a subscription's later
payments belong to an order that is paid already, so it never asks about them. Telegram
keeps an update for 24 hours: a renewal charged while the bot was down longer was never
applied, and our lapse sweep would remove a member who paid. Here every subscription
payment in the transactions that we have no record of is applied through the update's own
path (billing.stars.payment_notice, then billing.ingest.process_notice), under the same
event id as its successful_payment (the charge id), so the update arriving after all, or a
second pass, changes nothing.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlmodel import col

from billing.errors import InvalidEvent
from billing.ingest import process_notice
from billing.providers.stars_provider import StarsProvider, StarTransaction
from billing.stars import (
    CURRENCY,
    PROVIDER,
    SUBSCRIPTION_PERIOD_DAYS,
    StarsPayment,
    complete,
    payment_notice,
)
from storage.db import Database
from storage.models import Order, Payment, Plan, WebhookEvent

log = logging.getLogger(__name__)

# Ids asked about per statement (well inside every driver's parameter limit).
CHUNK = 500


async def _seen(db: Database, ids: list[str]) -> set[str]:
    """The charge ids already on record: as a payment, or as an event (applied, or kept
    with its error, e.g. a payment for an order that is not ours)."""
    seen: set[str] = set()
    async with db.session() as s:
        for i in range(0, len(ids), CHUNK):
            part = ids[i : i + CHUNK]
            seen.update(
                (
                    await s.execute(
                        select(col(Payment.provider_payment_id)).where(
                            col(Payment.provider) == PROVIDER,
                            col(Payment.provider_payment_id).in_(part),
                        )
                    )
                ).scalars()
            )
            seen.update(
                (
                    await s.execute(
                        select(col(WebhookEvent.event_id)).where(
                            col(WebhookEvent.provider) == PROVIDER,
                            col(WebhookEvent.event_id).in_(part),
                        )
                    )
                ).scalars()
            )
    return seen


def _firsts(txs: Iterable[StarTransaction]) -> set[str]:
    """The first payment of each order (the one that opened its subscription)."""
    first: dict[str, StarTransaction] = {}
    for tx in txs:
        if tx.invoice_payload and (
            tx.invoice_payload not in first or tx.date < first[tx.invoice_payload].date
        ):
            first[tx.invoice_payload] = tx
    return {tx.id for tx in first.values()}


async def _sold_subscriptions(db: Database) -> bool:
    """Whether any Stars subscription was ever paid: else there is nothing to look for
    (and no reason to page through the bot's transactions on every pass)."""
    async with db.session() as s:
        return (
            await s.execute(
                select(col(Order.id))
                .join(Plan, col(Plan.id) == col(Order.plan_id))
                .where(
                    col(Order.provider) == PROVIDER,
                    col(Order.paid_at).is_not(None),
                    col(Plan.recurring),
                )
                .limit(1)
            )
        ).first() is not None


async def reconcile_star_subscriptions(
    db: Database, provider: StarsProvider, now: datetime
) -> dict[str, int]:
    """Apply the subscription payments we have no record of; counts by outcome. Raises
    PaymentError when Telegram cannot be asked."""
    if not await _sold_subscriptions(db):
        return {}
    txs = await provider.subscription_payments()
    counts: Counter[str] = Counter()
    if not txs:
        return {}
    seen = await _seen(db, [tx.id for tx in txs])
    firsts = _firsts(txs)
    for tx in txs:
        if tx.id in seen or not tx.invoice_payload:
            continue
        # Telegram's expiration is not in the transaction: a period runs 30 days from its
        # charge (a renewal extends to at least the end on record, never shortens it).
        try:
            notice = payment_notice(
                StarsPayment(
                    charge_id=tx.id,
                    invoice_payload=tx.invoice_payload,
                    total_amount=tx.amount,
                    currency=CURRENCY,
                    is_recurring=True,
                    is_first_recurring=tx.id in firsts,
                    subscription_expiration=tx.date + timedelta(days=SUBSCRIPTION_PERIOD_DAYS),
                ),
                event_type="reconcile.subscription_payment",
            )
        except InvalidEvent:  # not an order number of ours
            continue
        try:
            async with db.session() as s:
                notice = await complete(s, notice)
            result = await process_notice(db, PROVIDER, notice, now)
        except Exception:  # one bad payment must not stop the rest
            log.exception("reconcile of Stars payment %s failed", tx.id)
            counts["errors"] += 1
            continue
        counts[f"subscription_{result.outcome.value}"] += 1
    return dict(counts)
