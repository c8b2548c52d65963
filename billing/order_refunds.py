"""The owner's `/refund <order>`: the order's own money back to the buyer through the
provider's refund API.

What is refunded is what is left of the order's own charges (never its extra charges, which
have their one-tap button, billing/refunds.py) after the refunds and disputes already on
record. Asking marks those charges (`payment.refund_requested_at`, compare-and-set, with the
order row locked) and queues one outbox `refund_payment` row per charge, so two requests at
once queue the refund once. The outbox calls the provider after the commit with an
idempotency key that names the request, retrying on 5xx and network errors; a refusal
clears the mark (billing/provider_calls._refused), tells the owner, and a later request is a
new one with a new key (Stripe replays a key's first answer, refusals included).

When the refund lands (the provider's refund webhook, or a RefundSettler's notice) the
ledger applies it like any other (billing/payments.apply_reversal): the order is refunded,
the owner's refund policy ends or keeps the access and stops a renewing subscription, and
the buyer and the owner are told.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from billing.payments import WALLET, refund_wallet_order
from billing.topup import KIND as TOPUP
from billing.topup import check_refundable
from membership.catalog import is_global_admin
from membership.errors import RuleError
from membership.links import linked_user_id
from storage.models import AuditLog, Order, Payment, Plan, TopupProduct, User, stored_id
from storage.money import Money
from storage.queries import audit, enqueue

# Orders whose money was taken: a paid order, or one refunded in part or whole already.
REFUNDABLE_STATUSES = ("paid", "refunded")
REQUESTED = "order.refund_requested"


@dataclass(frozen=True)
class OrderRefundAsked:
    order_no: str
    money: Money  # all that was asked back
    provider: str  # "wallet": paid from the wallet, returned to it already
    calls: int  # refund calls queued: one per charge with money left


@dataclass(frozen=True)
class ChargeLeft:
    payment: Payment
    left: int  # minor units still to refund on this charge


async def charges_left(session: AsyncSession, order_id: int) -> tuple[list[ChargeLeft], int]:
    """The order's own charges with what is left of each, and the refunded total.

    A refund that names the charge it returned (`payment.reverses`) is taken from that
    charge. Other reversals are on record per order only (a subscription's renewals are
    charges of the same order), so they are taken from the newest charges first: an owner
    refunding a subscription by hand usually refunds its latest period."""
    charges = list(
        (
            await session.execute(
                select(Payment)
                .where(
                    col(Payment.order_id) == order_id,
                    col(Payment.kind) == "charge",
                    col(Payment.extra).is_(False),
                )
                .order_by(col(Payment.id))
            )
        )
        .scalars()
        .all()
    )
    rows = await session.execute(
        select(
            col(Payment.kind),
            col(Payment.reverses),
            func.coalesce(func.sum(col(Payment.amount_minor)), 0),
        )
        .where(
            col(Payment.order_id) == order_id,
            col(Payment.extra).is_(False),
            col(Payment.kind).in_(("refund", "dispute", "dispute_won")),
        )
        .group_by(col(Payment.kind), col(Payment.reverses))
    )
    by_charge = {p.provider_payment_id: p for p in charges}
    named: dict[str, int] = {}  # refunds that name the charge they returned
    refunded = back = 0
    for kind, reverses, total in rows.all():
        amount = int(total)
        if kind == "refund":
            refunded += amount
            if reverses in by_charge:
                named[str(reverses)] = named.get(str(reverses), 0) + amount
                continue
        back += -amount if kind == "dispute_won" else amount
    # A refund that names its charge is taken from that charge (Telegram refunds a Star
    # payment whole: asking again for a charge refunded already returns nothing, and the
    # charge that still holds the money would never be refunded).
    left = {
        p.id: p.amount_minor - min(p.amount_minor, named.get(p.provider_payment_id, 0))
        for p in charges
    }
    out: list[ChargeLeft] = []
    for p in reversed(charges):
        take = min(left[p.id], max(back, 0))
        back -= take
        out.append(ChargeLeft(p, left[p.id] - take))
    out.reverse()
    return out, refunded


async def _seller(session: AsyncSession, order: Order) -> int | None:
    """The user who sold the order: the plan's owner, or the top-up product's."""
    if order.plan_id is None:
        product = await session.get(TopupProduct, order.topup_id)
        return None if product is None else product.owner_user_id
    plan = await session.get(Plan, order.plan_id)
    return None if plan is None else plan.owner_user_id


async def request_order_refund(
    session: AsyncSession,
    actor: User,
    order_no: str,
    now: datetime,
    *,
    refundable: set[str],
    admin_ids: Sequence[int] = (),
) -> OrderRefundAsked:
    """Queue the refund of what is left of order `order_no`'s own money. Only the owner of
    the plan it bought (or a configured admin) may ask; anyone else hears it is unknown, so
    order numbers leak nothing. `refundable` names the providers that refund through their
    API. Raises RuleError (the caller rolls back; nothing changed) otherwise."""
    order = (
        await session.execute(
            select(Order).where(col(Order.order_no) == order_no).with_for_update()
        )
    ).scalar_one_or_none()
    seller = None if order is None else await _seller(session, order)
    if (
        order is None
        or seller is None
        or (
            seller != actor.id
            and not is_global_admin(actor, admin_ids)
            # the owner's linked account (a bundle plan made from the other platform)
            and seller != await linked_user_id(session, stored_id(actor))
        )
    ):
        raise RuleError("order_refund_unknown", order_no=order_no)
    if order.status not in REFUNDABLE_STATUSES:
        raise RuleError("order_refund_not_paid", order_no=order_no, status=order.status)
    assert order.id is not None
    if order.provider == WALLET:
        # Paid whole from the wallet: nobody to ask, the wallet takes it back now.
        back = await refund_wallet_order(session, order_no, f"user:{actor.id}", now)
        if back is None:
            raise RuleError("order_refund_not_paid", order_no=order_no, status=order.status)
        return OrderRefundAsked(order_no, back, WALLET, 0)
    if order.kind == TOPUP and order.status == "paid":
        # The balance it credited must still be there to take back (billing/topup.py).
        await check_refundable(session, order)
    charges, refunded = await charges_left(session, order.id)
    due = [c for c in charges if c.left > 0]
    money = Money(sum(c.left for c in due), order.currency)
    if not due:
        if refunded > 0:
            raise RuleError(
                "order_refund_already_done",
                order_no=order_no,
                amount=str(Money(refunded, order.currency)),
            )
        raise RuleError("order_refund_disputed", order_no=order_no)
    if order.provider not in refundable:
        raise RuleError(
            "refund_by_hand", provider=order.provider, amount=str(money), order_no=order_no
        )
    if any(c.payment.refund_requested_at is not None for c in due):
        raise RuleError("order_refund_already_requested", order_no=order_no)
    # Compare-and-set: the order row is locked on PostgreSQL and SQLite runs one writer at a
    # time, but a request that finds any charge marked meanwhile queues nothing.
    marked = await session.execute(
        update(Payment)
        .where(
            col(Payment.id).in_([c.payment.id for c in due]),
            col(Payment.refund_requested_at).is_(None),
        )
        .values(refund_requested_at=now)
        .execution_options(synchronize_session=False)
    )
    if marked.rowcount != len(due):  # type: ignore[attr-defined]
        raise RuleError("order_refund_already_requested", order_no=order_no)
    # The request's number names its idempotency key: retries of this request reuse it, and
    # a request after a refusal is a new one (a reused key would replay the refusal).
    asked_before = (
        await session.execute(
            select(func.count())
            .select_from(AuditLog)
            .where(
                col(AuditLog.action) == REQUESTED,
                col(AuditLog.target) == f"order:{order_no}",
            )
        )
    ).scalar_one()
    nth = int(asked_before) + 1
    buyer_ref = (
        await session.execute(
            select(col(User.platform_user_id)).where(col(User.id) == order.user_id)
        )
    ).scalar_one()
    for i, c in enumerate(due):
        key = f"gatepass-refund-order-{order.provider}-{order_no}-{nth}"
        if len(due) > 1:
            key += f"-{i + 1}"
        enqueue(
            session,
            "refund_payment",
            order.provider,
            {
                "provider": order.provider,
                "payment_row_id": c.payment.id,
                "payment_id": c.payment.provider_payment_id,
                "amount_minor": c.left,
                "currency": c.payment.currency,
                "order_no": order_no,
                "buyer_ref": buyer_ref,
                "reason": "requested_by_customer",
                "idempotency_key": key,
                "owner": {
                    "user_id": actor.platform_user_id,
                    "platform": actor.platform,
                    "language": actor.language,
                },
            },
            now,
        )
    audit(
        session,
        f"user:{actor.id}",
        REQUESTED,
        f"order:{order_no}",
        now,
        f"{money} in {len(due)} call(s); request {nth}",
    )
    return OrderRefundAsked(order_no, money, order.provider, len(due))
