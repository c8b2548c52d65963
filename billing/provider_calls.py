"""Provider calls the outbox makes after a commit (like the chat calls in
membership/delivery.py, but to a payment provider): retried until they land.

`stop_renewal`: a refund or dispute ended (or will not renew) access that a subscription
pays for; the provider must stop charging for it too, or the buyer is charged next period
for access they no longer have.

`refund_payment`: the owner pressed "Refund" on an extra charge (billing/refunds.py). The
call carries an idempotency key, so retries never refund twice; the provider's refund
webhook then settles the charge in the ledger. A refusal is told to the owner, and the
charge may be asked again.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlmodel import col

from billing.errors import PaymentError, PaymentRefused
from billing.ingest import process_notice
from billing.provider import Refunder, RefundSettler, SubscriptionCanceller
from membership.delivery import DeliveryContext, Handler
from membership.gateway import RejectedError, TransientError
from storage.models import Payment
from storage.money import Money
from storage.queries import audit, enqueue


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
    async with ctx.db.transaction() as s:
        audit(
            s,
            f"provider:{payload['provider']}",
            "payment.refund_sent",
            f"order:{payload['order_no']}",
            ctx.now,
            f"{payload['payment_id']}: {refund_id}",
        )


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
HANDLERS: dict[str, Handler] = {"stop_renewal": stop_renewal, "refund_payment": refund_payment}
