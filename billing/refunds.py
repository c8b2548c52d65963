"""The owner's one-tap refund of money an order did not expect (an extra charge: paid twice,
paid after a failed attempt, a wrong amount).

Pressing the button asks once per charge (compare-and-set on the payment row) and queues an
outbox row; the outbox calls the provider's refund API after the commit, with an
idempotency key, retrying on 5xx and network errors (billing/provider_calls.py). The
provider's refund webhook then settles the extra charge in the ledger (billing/payments.py);
the order and its access are never touched by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from membership.errors import RuleError
from storage.models import Order, Payment, Plan, TopupProduct, User
from storage.money import Money
from storage.queries import audit, enqueue


@dataclass(frozen=True)
class RefundAsked:
    order_no: str
    money: Money
    provider: str


async def outstanding(session: AsyncSession, payment: Payment) -> int:
    """What is left of an extra charge after the refunds and disputes that reversed it."""
    sign = case(
        (col(Payment.kind) == "dispute_won", col(Payment.amount_minor)),
        else_=-col(Payment.amount_minor),
    )
    back = (
        await session.execute(
            select(func.coalesce(func.sum(sign), 0)).where(
                col(Payment.provider) == payment.provider,
                col(Payment.reverses) == payment.provider_payment_id,
            )
        )
    ).scalar_one()
    return payment.amount_minor + int(back)


async def request_extra_refund(
    session: AsyncSession, owner: User, payment_row_id: int, now: datetime, *, refundable: set[str]
) -> RefundAsked:
    """Queue the refund of what is left of extra charge `payment_row_id`. Only the owner
    of the plan the order bought may ask; `refundable` names the providers that refund
    through their API. Raises RuleError (nothing changed) otherwise."""
    row = (
        await session.execute(
            # A plan's owner, or a top-up product's (a top-up order has no plan).
            select(
                Payment,
                Order,
                func.coalesce(col(Plan.owner_user_id), col(TopupProduct.owner_user_id)),
            )
            .join(Order, col(Order.id) == col(Payment.order_id))
            .outerjoin(Plan, col(Plan.id) == col(Order.plan_id))
            .outerjoin(TopupProduct, col(TopupProduct.id) == col(Order.topup_id))
            .where(col(Payment.id) == payment_row_id)
        )
    ).first()
    if row is None or not row[0].extra or row[0].kind != "charge":
        raise RuleError("refund_not_extra")
    payment, order, seller = row
    if seller != owner.id:
        raise RuleError("refund_not_yours")
    left = await outstanding(session, payment)
    money = Money(left, payment.currency)
    if left <= 0:
        raise RuleError(
            "refund_already_done", amount=str(Money(payment.amount_minor, payment.currency))
        )
    if payment.provider not in refundable:
        raise RuleError(
            "refund_by_hand", provider=payment.provider, amount=str(money), order_no=order.order_no
        )
    asked = await session.execute(
        update(Payment)
        .where(col(Payment.id) == payment.id, col(Payment.refund_requested_at).is_(None))
        .values(refund_requested_at=now)
        .execution_options(synchronize_session=False)
    )
    if asked.rowcount != 1:  # type: ignore[attr-defined]
        raise RuleError("refund_already_requested")
    # A second payment of a paid order is a duplicate; other extra money (a wrong amount,
    # after a failure) is refunded as the buyer's money to have back.
    own = (
        await session.execute(
            select(col(Payment.id))
            .where(
                col(Payment.order_id) == order.id,
                col(Payment.kind) == "charge",
                col(Payment.extra).is_(False),
            )
            .limit(1)
        )
    ).first()
    buyer_ref = (
        await session.execute(
            select(col(User.platform_user_id)).where(col(User.id) == order.user_id)
        )
    ).scalar_one()
    enqueue(
        session,
        "refund_payment",
        payment.provider,
        {
            "provider": payment.provider,
            "payment_row_id": payment.id,
            "payment_id": payment.provider_payment_id,
            "amount_minor": left,
            "currency": payment.currency,
            "order_no": order.order_no,
            "buyer_ref": buyer_ref,
            "reason": "duplicate" if own is not None else "requested_by_customer",
            # One refund per charge whatever happens: retries (ours, the SDK's) reuse it.
            "idempotency_key": f"gatepass-refund-{payment.provider}-{payment.provider_payment_id}",
            "owner": {
                "user_id": owner.platform_user_id,
                "platform": owner.platform,
                "language": owner.language,
            },
        },
        now,
    )
    audit(
        session,
        f"user:{owner.id}",
        "payment.refund_requested",
        f"order:{order.order_no}",
        now,
        f"{money} of {payment.provider_payment_id}",
    )
    return RefundAsked(order.order_no, money, payment.provider)
