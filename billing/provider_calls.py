"""Provider calls the outbox makes after a commit (like the chat calls in
membership/delivery.py, but to a payment provider): retried until they land.

`stop_renewal`: a refund or dispute ended (or will not renew) access that a subscription
pays for; the provider must stop charging for it too, or the buyer is charged next period
for access they no longer have.

`refund_payment`: the owner pressed "Refund" on an extra charge (billing/refunds.py). The
call carries an idempotency key, so retries never refund twice; the provider's refund
webhook then settles the charge in the ledger. A refusal is told to the owner, and the
charge may be asked again.

`refund_check`: a refund the provider only started (a `RefundTracker`: WeChat Pay answers
PROCESSING and tells the outcome by notification) is asked about again REFUND_CHECK_AFTER
later, in case that notification was lost (our outage outlasting its retries, a wrong
notify_url). Normally the notification came first: the check's notice is then a duplicate
(the ledger knows the refund by its id) and changes nothing. Settled, the answer goes
through the webhook path (billing.ingest.process_notice); still in progress, the row retries
with the outbox's backoff (every 10 minutes at most) until REFUND_CHECK_FOR has passed since
the refund was sent. Then it stops (the row is marked failed with the reason, and audited
as `payment.refund_unconfirmed`) and tells the owner: the charge stays "refund requested",
since the money may still move and a late notification is still applied; the merchant
console has the answer.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from billing.errors import PaymentError, PaymentRefused
from billing.ingest import process_notice
from billing.provider import Refunder, RefundSettler, RefundTracker, SubscriptionCanceller
from membership.delivery import DeliveryContext, Handler
from membership.gateway import RejectedError, TransientError
from storage.models import Payment
from storage.money import Money
from storage.queries import audit, enqueue

log = logging.getLogger(__name__)

# The outcome's notification normally arrives within a minute of the refund call; the check
# comes well after it, so that in the usual case it finds the refund recorded already.
REFUND_CHECK_AFTER = timedelta(minutes=15)
# WeChat Pay settles a refund to the buyer's balance at once and to a bank card within a few
# working days; a refund still PROCESSING after a week is one for a human, not for polling.
REFUND_CHECK_FOR = timedelta(days=7)


async def stop_renewal(ctx: DeliveryContext, payload: dict[str, Any]) -> None:
    provider = ctx.providers.get(payload["provider"])
    if not isinstance(provider, SubscriptionCanceller):
        raise RejectedError(
            f"provider {payload['provider']} is not configured to stop "
            f"subscription {payload['subscription_id']}"
        )
    try:
        await provider.cancel_subscription_at_period_end(
            payload["subscription_id"], buyer_ref=str(payload.get("buyer_ref", ""))
        )
    except PaymentRefused as e:
        raise RejectedError(str(e)) from e
    except PaymentError as e:
        raise TransientError(str(e)) from e


async def refund_payment(ctx: DeliveryContext, payload: dict[str, Any]) -> None:
    provider = ctx.providers.get(payload["provider"])
    if not isinstance(provider, Refunder):
        # Configured when asked, gone since: the owner hears it and may ask again (or refund
        # by hand); left marked, the charge would read "requested already" for good.
        reason = (
            f"provider {payload['provider']} is not configured to refund {payload['payment_id']}"
        )
        await _refused(ctx, payload, reason)
        raise RejectedError(reason)
    try:
        refund_id = await provider.refund(
            payload["payment_id"],
            int(payload["amount_minor"]),
            payload["currency"],
            idempotency_key=payload["idempotency_key"],
            reason=payload.get("reason", "duplicate"),
            buyer_ref=str(payload.get("buyer_ref", "")),
        )
    except PaymentRefused as e:
        await _refused(ctx, payload, str(e))
        raise RejectedError(str(e)) from e
    except PaymentError as e:
        raise TransientError(str(e)) from e
    tracked = False
    if isinstance(provider, RefundSettler):
        # No refund webhook will come: record the refund now, through the webhook path.
        notice = provider.refund_notice(
            payload["payment_id"],
            int(payload["amount_minor"]),
            payload["currency"],
            refund_id,
            payload["order_no"],
        )
        await process_notice(ctx.db, payload["provider"], notice, ctx.now)
    elif isinstance(provider, RefundTracker):
        tracked = True
    async with ctx.db.transaction() as s:
        if tracked:
            _enqueue_check(s, ctx.now, payload, refund_id)
        audit(
            s,
            f"provider:{payload['provider']}",
            "payment.refund_sent",
            f"order:{payload['order_no']}",
            ctx.now,
            f"{payload['payment_id']}: {refund_id}",
        )


def _enqueue_check(s: AsyncSession, now: datetime, payload: dict[str, Any], refund_id: str) -> None:
    """Queue the follow-up query of a refund just sent (see `refund_check`), due later."""
    row = enqueue(
        s,
        "refund_check",
        payload["provider"],
        {**payload, "refund_id": refund_id, "until": (now + REFUND_CHECK_FOR).isoformat()},
        now,
    )
    row.next_attempt_at = now + REFUND_CHECK_AFTER


async def refund_check(ctx: DeliveryContext, payload: dict[str, Any]) -> None:
    provider = ctx.providers.get(payload["provider"])
    refund = f"refund {payload['refund_id']} of {payload['payment_id']}"
    if not isinstance(provider, RefundTracker):
        raise RejectedError(f"provider {payload['provider']} is not configured to look up {refund}")
    try:
        notice = await provider.refund_notice_now(
            payload["refund_id"],
            payload["idempotency_key"],
            payload["payment_id"],
            int(payload["amount_minor"]),
            payload["currency"],
            payload["order_no"],
        )
    except PaymentError as e:
        await _give_up_when_due(ctx, payload, f"{refund} cannot be looked up: {e}")
        raise TransientError(str(e)) from e
    if notice is None:
        await _give_up_when_due(ctx, payload, f"{refund} is still in progress")
        raise TransientError(f"{refund} is still in progress")
    # Deduped against its notification by the ledger: a refund by its id (REFUNDED), a
    # failure by its audit record (billing/payments.apply_refund_failed).
    await process_notice(ctx.db, payload["provider"], notice, ctx.now)


async def _give_up_when_due(ctx: DeliveryContext, payload: dict[str, Any], reason: str) -> None:
    """Past REFUND_CHECK_FOR: stop asking (RejectedError marks the row failed with why)."""
    if ctx.now < datetime.fromisoformat(payload["until"]):
        return
    reason = (
        f"{reason}; stopped asking after {REFUND_CHECK_FOR.days} days, see the merchant console"
    )
    log.warning("%s: %s", payload["provider"], reason)
    owner = payload["owner"]
    async with ctx.db.transaction() as s:
        audit(
            s,
            f"provider:{payload['provider']}",
            "payment.refund_unconfirmed",
            f"order:{payload['order_no']}",
            ctx.now,
            reason[:1000],
        )
        # The owner asked for this refund: they hear that it is for them to check now.
        enqueue(
            s,
            "notify",
            owner["platform"],
            {
                "user_id": owner["user_id"],
                "key": "owner_refund_unconfirmed",
                "language": owner["language"],
                "params": {
                    "order_no": payload["order_no"],
                    "amount": str(Money(int(payload["amount_minor"]), payload["currency"])),
                    "days": REFUND_CHECK_FOR.days,
                },
            },
            ctx.now,
        )
    raise RejectedError(reason)


async def _refused(ctx: DeliveryContext, payload: dict[str, Any], reason: str) -> None:
    """The provider will not refund: the owner hears why and may press again later."""
    owner = payload["owner"]
    async with ctx.db.transaction() as s:
        await s.execute(
            update(Payment)
            .where(col(Payment.id) == int(payload["payment_row_id"]))
            .values(refund_requested_at=None)
        )
        audit(
            s,
            f"provider:{payload['provider']}",
            "payment.refund_refused",
            f"order:{payload['order_no']}",
            ctx.now,
            f"{payload['payment_id']}: {reason}",
        )
        enqueue(
            s,
            "notify",
            owner["platform"],
            {
                "user_id": owner["user_id"],
                "key": "owner_refund_failed",
                "language": owner["language"],
                "params": {
                    "order_no": payload["order_no"],
                    "reason": reason,
                    "amount": str(Money(int(payload["amount_minor"]), payload["currency"])),
                },
            },
            ctx.now,
        )


# Kinds whose rows carry the provider's name as their platform and need no chat gateway.
HANDLERS: dict[str, Handler] = {
    "stop_renewal": stop_renewal,
    "refund_payment": refund_payment,
    "refund_check": refund_check,
}
