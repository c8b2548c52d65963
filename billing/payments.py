"""Flow 2: a verified PaymentEvent changes orders, payments and access, in the caller's
transaction. Each function returns a typed Result (an Outcome, whether it is fine, a detail)
for the webhook_event record.

Providers duplicate and reorder events, so every handler is idempotent and decides from the
state of the order, its payments and its memberships, never from what arrived before:
- a payment row is unique per provider payment id (refunds and disputes: their own id);
- an order moves by compare-and-set; `paid` happens once, and only a first payment grants;
- a renewal sets the end to max(current end, paid period end);
- a refund or dispute recorded before the payment it reverses stops that payment granting;
- money the order did not expect (paid twice, after a failure, a wrong amount) is an `extra`
  payment: never revenue, never a renewal, flagged to the owner with a refund button, and
  its refund or dispute settles it alone (the order and its access are not touched);
- a dispute closed as won is a `dispute_won` entry that cancels the dispute in the ledger.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, bindparam, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from billing.events import EventKind, PaymentEvent
from billing.topup import give_back_topup, settle_topup, take_back_topup, topup_title
from billing.wallet import release_holds, return_holds, reverse_points
from billing.wallet_settle import earn_on_paid, spend_wallet_part
from membership.grants import extend_to, grant_plan, hold_links, plan_groups
from membership.links import account_on, linked_account
from membership.removal import ENDED, end_access
from storage.dialects import insert_ignore as insert_ignore_stmt
from storage.models import (
    AuditLog,
    ChatGroup,
    Membership,
    Order,
    Payment,
    Plan,
    TopupProduct,
    User,
    stored_id,
    table,
)
from storage.money import Money
from storage.queries import audit, enqueue, insert_ignore

# Orders that a payment may still complete: a late payment on an expired or cancelled order
# is honoured with access (the buyer paid; refusing would need a refund flow and a dispute).
# Reconciliation closes timed-out orders as `expired` relying on exactly this.
PAYABLE = ("pending", "expired", "cancelled")
# The provider of an order the wallet paid whole (billing/wallet_checkout.py).
WALLET = "wallet"


class Outcome(StrEnum):
    GRANTED = "granted"  # the order's first payment: access granted
    ALREADY_PAID = "already_paid"  # nothing new (a repeat, or the order was paid before)
    RENEWED = "renewed"  # a paid period extended access
    NOTIFIED = "notified"  # the buyer was told (failed payment)
    UPDATED = "updated"  # subscription state (auto-renew) tracked
    REVOKED = "revoked"  # refund/dispute: access ended (owner policy "revoke")
    KEPT = "kept"  # refund/dispute: access runs to its end (policy "keep")
    PARTIAL_REFUND = "partial_refund"  # part refunded: recorded, owner told, access unchanged
    RECORDED = "recorded"  # reversal of an order with nothing to end (yet)
    ALREADY_RECORDED = "already_recorded"  # this refund/dispute was applied before
    EXTRA_SETTLED = "extra_settled"  # an unexpected charge refunded (or disputed) back
    DISPUTE_WON = "dispute_won"  # a dispute closed in the seller's favour
    DISPUTE_LOST = "dispute_lost"  # a dispute closed in the buyer's favour
    IGNORED = "ignored"
    DUPLICATE = "duplicate"  # the event was processed before (billing/ingest.py)
    # Not OK: kept in webhook_event.error, for a human to look at.
    MISMATCH = "mismatch"
    UNEXPECTED_CHARGE = "unexpected_charge"  # paid twice / after a failure: owner to refund
    UNKNOWN_ORDER = "unknown_order"
    REVERSED = "reversed"  # a payment for an order already refunded/disputed
    ORDER_FAILED = "order_failed"  # a payment of a failed order, seen again
    NO_MEMBERSHIP = "no_membership"  # a renewal paid with no (unrevoked) access to extend


_OK = frozenset(
    {
        Outcome.GRANTED,
        Outcome.ALREADY_PAID,
        Outcome.RENEWED,
        Outcome.NOTIFIED,
        Outcome.UPDATED,
        Outcome.REVOKED,
        Outcome.KEPT,
        Outcome.PARTIAL_REFUND,
        Outcome.RECORDED,
        Outcome.ALREADY_RECORDED,
        Outcome.EXTRA_SETTLED,
        Outcome.DISPUTE_WON,
        Outcome.DISPUTE_LOST,
        Outcome.IGNORED,
        Outcome.DUPLICATE,
    }
)


@dataclass(frozen=True)
class Result:
    """What applying an event did: the outcome, whether that is fine (else a human should
    look: webhook_event.error keeps it) and a detail for the record."""

    outcome: Outcome
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome in _OK

    @property
    def error(self) -> str | None:
        """The text kept in webhook_event.error; None when the outcome is fine."""
        if self.ok:
            return None
        return (f"{self.outcome.value}: {self.detail}" if self.detail else self.outcome.value)[
            :1000
        ]

    def __str__(self) -> str:
        return self.outcome.value


# -- finding the order -----------------------------------------------------------------------


@dataclass(frozen=True)
class OrderRow:
    """The order fields settling a payment needs, read (and locked) with plain SQL."""

    id: int
    order_no: str
    user_id: int
    plan_id: int | None  # None: a top-up (kind "topup", topup_id)
    provider: str
    amount_minor: int
    currency: str
    status: str
    paid_at: datetime | None
    provider_ref: str | None
    wallet_minor: int
    points_used: int
    points_minor: int
    kind: str = "plan"
    topup_id: int | None = None


_ORDERS, _PAYMENTS = table(Order), table(Payment)
_ORDER_SELECT = select(*(_ORDERS.c[f] for f in OrderRow.__dataclass_fields__))
_ORDER_BY_NO = _ORDER_SELECT.where(_ORDERS.c.order_no == bindparam("no")).with_for_update()
_ORDER_BY_REF = (
    _ORDER_SELECT.where(
        _ORDERS.c.provider == bindparam("provider"), _ORDERS.c.provider_ref == bindparam("ref")
    )
    .order_by(_ORDERS.c.id)
    .limit(1)
    .with_for_update()
)
_ORDER_BY_ID = _ORDER_SELECT.where(_ORDERS.c.id == bindparam("id")).with_for_update()
_PAYMENT_INSERT = insert_ignore_stmt(_PAYMENTS, ("provider", "provider_payment_id"))
_OPEN_DISPUTES = select(
    func.coalesce(
        func.sum(
            case(
                (_PAYMENTS.c.kind == "dispute", _PAYMENTS.c.amount_minor),
                else_=-_PAYMENTS.c.amount_minor,
            )
        ),
        0,
    )
).where(
    _PAYMENTS.c.order_id == bindparam("order_id"),
    _PAYMENTS.c.extra.is_(False),
    _PAYMENTS.c.kind.in_(("dispute", "dispute_won")),
)
_MARK_PAID = (
    update(_ORDERS)
    .where(_ORDERS.c.id == bindparam("order_id"), _ORDERS.c.status.in_(PAYABLE))
    .values(status="paid", paid_at=bindparam("at"), provider_ref=bindparam("ref"))
)


def _order_row(r: Any) -> OrderRow:
    return OrderRow(*r)


async def find_order(session: AsyncSession, event: PaymentEvent) -> OrderRow | None:
    """The event's order by order number or checkout reference, locked for the transaction."""
    if event.order_no:
        r = (await session.execute(_ORDER_BY_NO, {"no": event.order_no})).first()
    elif event.provider_ref:
        r = (
            await session.execute(
                _ORDER_BY_REF, {"provider": event.provider, "ref": event.provider_ref}
            )
        ).first()
    else:
        return None
    if r is None:
        return None
    order = _order_row(r)
    if order.provider != event.provider:
        return None  # another provider's order number: not ours to settle
    return order


async def locate_order(session: AsyncSession, event: PaymentEvent) -> OrderRow | None:
    """find_order, else through a payment already recorded under one of the event's payment
    ids, else through the subscription (an order whose payment named it, or the latest paid
    order behind a membership that carries it). Locked for the transaction."""
    order = await find_order(session, event)
    if order is not None:
        return order
    order_id: int | None = None
    ids = [i for i in (event.provider_payment_id, *event.payment_refs, event.subscription_id) if i]
    if ids:
        order_id = (
            await session.execute(
                select(col(Payment.order_id))
                .where(
                    col(Payment.provider) == event.provider,
                    col(Payment.provider_payment_id).in_(ids),
                )
                .order_by(col(Payment.id))
                .limit(1)
            )
        ).scalar_one_or_none()
    if order_id is None and event.subscription_id:
        order_id = (
            await session.execute(
                select(col(Order.id))
                .join(
                    Membership,
                    and_(
                        col(Membership.user_id) == col(Order.user_id),
                        col(Membership.plan_id) == col(Order.plan_id),
                    ),
                )
                .where(
                    col(Membership.provider_subscription_id) == event.subscription_id,
                    col(Order.provider) == event.provider,
                    col(Order.paid_at).is_not(None),
                )
                .order_by(col(Order.paid_at).desc())
                .limit(1)
            )
        ).scalar_one_or_none()
    if order_id is None:
        return None
    r = (await session.execute(_ORDER_BY_ID, {"id": order_id})).first()
    assert r is not None
    return _order_row(r)


# -- small shared steps ----------------------------------------------------------------------


async def record_payment(
    session: AsyncSession,
    order: OrderRow,
    event: PaymentEvent,
    kind: str,
    now: datetime,
    *,
    payment_id: str | None = None,
    amount_minor: int | None = None,
    reverses: str | None = None,
) -> bool:
    """The money movement, once per provider payment id; False if already recorded.
    `reverses`: for a refund, the provider id of the charge it returns, when known."""
    pid = (
        payment_id or event.provider_payment_id or f"{event.provider_ref or order.order_no}:{kind}"
    )
    new = (
        await session.execute(
            _PAYMENT_INSERT(session),
            {
                "order_id": order.id,
                "provider": event.provider,
                "provider_payment_id": pid,
                "kind": kind,
                "amount_minor": event.amount_minor if amount_minor is None else amount_minor,
                "currency": event.currency,
                "at": now,
                "reverses": reverses,
            },
        )
    ).first()
    return new is not None


def _notify(
    session: AsyncSession,
    user: User,
    key: str,
    params: dict[str, object],
    now: datetime,
    buttons: list[dict[str, object]] | None = None,
) -> None:
    payload: dict[str, object] = {
        "user_id": user.platform_user_id,
        "key": key,
        "params": params,
        "language": user.language,
    }
    if buttons:
        payload["buttons"] = buttons
    enqueue(session, "notify", user.platform, payload, now)


def _handle(user: User) -> str:
    """How an owner's notice names a buyer: @username, else the platform id."""
    return f"@{user.username}" if user.username else user.platform_user_id


def _owner_params(order: OrderRow, plan: Sold, buyer: User, money: Money) -> dict[str, object]:
    """What every owner notice about money on an order names."""
    return {
        "order_no": order.order_no,
        "amount": str(money),
        "plan": plan.title,
        "buyer": _handle(buyer),
    }


async def _held_groups(session: AsyncSession, buyer: User, plan_id: int) -> list[ChatGroup]:
    """The plan's groups, for a renewal, refund or dispute to look up who holds each. For a
    bundle across platforms the buyer's row is held first (grants.hold_links), so no /link
    moves the access while we look; a plan on the buyer's own platform has no access a bind
    could move, and takes no lock."""
    groups = await plan_groups(session, plan_id)
    if any(g.platform != buyer.platform for g in groups):
        await hold_links(session, stored_id(buyer))
    return groups


@dataclass(frozen=True)
class Sold:
    """What an order bought, as notices name it: a plan, or a top-up (no plan; its
    product's owner is told about its money)."""

    title: str
    owner_user_id: int
    duration_days: int | None = None


async def _parties(session: AsyncSession, order: OrderRow) -> tuple[Sold, User, User | None]:
    """(what was bought, buyer, owner) of an order."""
    buyer = await session.get(User, order.user_id)
    assert buyer is not None
    if order.plan_id is None:
        product = await session.get(TopupProduct, order.topup_id)
        assert product is not None
        bought = Sold(topup_title(product), product.owner_user_id)
    else:
        plan = await session.get(Plan, order.plan_id)
        assert plan is not None
        bought = Sold(plan.title, plan.owner_user_id, plan.duration_days)
    return bought, buyer, await session.get(User, bought.owner_user_id)


async def _reversed_before_paid(session: AsyncSession, order: OrderRow) -> bool:
    """A dispute reached us before the payment it reverses: never grant then. (A refund
    that did so moved the order to `refunded` already.)"""
    return await _open_disputes(session, order) > 0


async def _open_disputes(session: AsyncSession, order: OrderRow) -> int:
    """The order's own disputed money not won back (open or lost disputes). Asked of every
    first payment: the statement is built once."""
    return int((await session.execute(_OPEN_DISPUTES, {"order_id": order.id})).scalar_one())


async def _flag_mismatch(
    session: AsyncSession, order: OrderRow, event: PaymentEvent, now: datetime
) -> Result:
    got, want = Money(event.amount_minor, event.currency), Money(order.amount_minor, order.currency)
    # Not the order's money: kept apart from its charges (and from revenue), to be refunded.
    row_id = await _record_extra(session, order, event, now)
    await session.execute(
        update(Order)
        .where(col(Order.id) == order.id, col(Order.status).in_(PAYABLE))
        .values(status="failed")
    )
    # A failed order keeps no wallet part (a no-op when the holds were settled before).
    await release_holds(session, order.id, now)
    detail = f"paid {got}, order is {want}"
    if row_id is None:  # the same money seen again (e.g. the invoice after its session)
        return Result(Outcome.MISMATCH, detail)
    audit(
        session,
        f"provider:{event.provider}",
        "payment.mismatch",
        f"order:{order.order_no}",
        now,
        detail,
    )
    _plan, buyer, owner = await _parties(session, order)
    if owner is not None:
        _notify(
            session,
            owner,
            "owner_payment_mismatch",
            {"order_no": order.order_no, "got": str(got), "want": str(want)},
            now,
            [refund_button(row_id, got)],
        )
    _notify(session, buyer, "payment_mismatch", {"order_no": order.order_no}, now)
    return Result(Outcome.MISMATCH, detail)


# -- money the order did not expect ---------------------------------------------------------

# Callback data of the owner's one-tap refund button: "<prefix>:<payment row id>" (aiogram's
# CallbackData format; bot/handlers/refunds.py reads it).
REFUND_CALLBACK_PREFIX = "xrf"


def refund_button(payment_row_id: int, money: Money) -> dict[str, object]:
    return {
        "text_key": "btn_refund_extra",
        "params": {"amount": str(money)},
        "callback_data": f"{REFUND_CALLBACK_PREFIX}:{payment_row_id}",
    }


def _charge_id(order: OrderRow, event: PaymentEvent) -> str:
    """The provider payment id a charge is recorded under (as record_payment does)."""
    return event.provider_payment_id or f"{event.provider_ref or order.order_no}:charge"


async def _has_own_charge(session: AsyncSession, order: OrderRow) -> bool:
    """The order's own money is on record (its first payment)."""
    return (
        await session.execute(
            select(col(Payment.id))
            .where(
                col(Payment.order_id) == order.id,
                col(Payment.kind) == "charge",
                col(Payment.extra).is_(False),
            )
            .limit(1)
        )
    ).first() is not None


async def _payment_row(
    session: AsyncSession, provider: str, payment_id: str, kind: str
) -> Payment | None:
    """The payment of `kind` recorded under the provider's id, if any."""
    return (
        await session.execute(
            select(Payment).where(
                col(Payment.provider) == provider,
                col(Payment.provider_payment_id) == payment_id,
                col(Payment.kind) == kind,
            )
        )
    ).scalar_one_or_none()


async def _record_extra(
    session: AsyncSession,
    order: OrderRow,
    event: PaymentEvent,
    now: datetime,
    *,
    kind: str = "charge",
    payment_id: str | None = None,
    amount_minor: int | None = None,
    reverses: str | None = None,
) -> int | None:
    """Money apart from the order's own (or its reversal), once per provider payment id;
    the new row's id, or None if it was recorded before."""
    return await insert_ignore(
        session,
        Payment,
        {
            "order_id": order.id,
            "provider": event.provider,
            "provider_payment_id": payment_id or _charge_id(order, event),
            "kind": kind,
            "amount_minor": event.amount_minor if amount_minor is None else amount_minor,
            "currency": event.currency,
            "at": now,
            "extra": True,
            "reverses": reverses,
        },
        conflict=["provider", "provider_payment_id"],
    )


async def _pay_settled_order(
    session: AsyncSession, order: OrderRow, event: PaymentEvent, now: datetime
) -> Result:
    """A payment for an order that is paid, refunded or failed already: the same money seen
    again changes nothing; new money is on record once as an extra charge, out of revenue,
    and the owner is asked to refund it (one tap). It is never a renewal and grants nothing."""
    pid = _charge_id(order, event)
    seen = await _payment_row(session, event.provider, pid, "charge")
    if seen is not None:
        if order.status == "failed":
            return Result(
                Outcome.MISMATCH if seen.extra else Outcome.ORDER_FAILED,
                f"order {order.order_no} is failed; payment {pid} seen again",
            )
        if order.status == "refunded" and order.paid_at is None:
            return Result(Outcome.REVERSED, f"order {order.order_no} was reversed before paid")
        return Result(Outcome.ALREADY_PAID)
    why = "after_failure" if order.status == "failed" else "twice"
    money = Money(event.amount_minor, event.currency)
    row_id = await _record_extra(session, order, event, now)
    assert row_id is not None  # not recorded: checked above, and this transaction holds the order
    detail = (
        f"{'paid after a failed attempt' if why == 'after_failure' else 'paid twice'}: "
        f"{money} on {order.status} order {order.order_no}, payment {pid}"
    )
    audit(
        session,
        f"provider:{event.provider}",
        "payment.unexpected",
        f"order:{order.order_no}",
        now,
        detail,
    )
    plan, buyer, owner = await _parties(session, order)
    if event.subscription_id and order.status in ("failed", "refunded"):
        # A subscription behind an order that will never grant keeps charging the buyer:
        # stop it (from the outbox, retried until the provider agrees).
        enqueue(
            session,
            "stop_renewal",
            event.provider,
            {
                "provider": event.provider,
                "subscription_id": event.subscription_id,
                # Stars name a subscription by its buyer too (editUserStarSubscription).
                "buyer_ref": buyer.platform_user_id,
            },
            now,
        )
    if owner is not None:
        _notify(
            session,
            owner,
            f"owner_extra_{why}",
            _owner_params(order, plan, buyer, money),
            now,
            [refund_button(row_id, money)],
        )
    return Result(Outcome.UNEXPECTED_CHARGE, detail)


async def _extra_charge_reversed(session: AsyncSession, event: PaymentEvent) -> Payment | None:
    """The extra charge a refund or dispute names, if it names one."""
    ids = [i for i in (event.provider_payment_id, *event.payment_refs) if i]
    if not ids:
        return None
    return (
        await session.execute(
            select(Payment)
            .where(
                col(Payment.provider) == event.provider,
                col(Payment.provider_payment_id).in_(ids),
                col(Payment.kind) == "charge",
                col(Payment.extra).is_(True),
            )
            .order_by(col(Payment.id))
            .limit(1)
        )
    ).scalar_one_or_none()


async def _reversed_sum(session: AsyncSession, payment_id: str, kind: str) -> int:
    return int(
        (
            await session.execute(
                select(func.coalesce(func.sum(col(Payment.amount_minor)), 0)).where(
                    col(Payment.reverses) == payment_id, col(Payment.kind) == kind
                )
            )
        ).scalar_one()
    )


async def _settle_extra(
    session: AsyncSession, order: OrderRow, extra: Payment, event: PaymentEvent, now: datetime
) -> Result:
    """A refund or dispute of an extra charge: that money went back. The order, its access
    and its own payments are untouched (refunding a double payment must not revoke)."""
    dispute = event.kind is EventKind.DISPUTED
    kind = "dispute" if dispute else "refund"
    if event.reversal_amount_minor is not None:
        amount = event.reversal_amount_minor
    elif dispute:
        amount = event.amount_minor
    else:  # only the running total is known: this step is what is not on record yet
        amount = max(
            event.amount_minor - await _reversed_sum(session, extra.provider_payment_id, "refund"),
            0,
        )
    rid = event.reversal_id or f"{extra.provider_payment_id}:{kind}:{event.amount_minor}"
    if (
        await _record_extra(
            session,
            order,
            event,
            now,
            kind=kind,
            payment_id=rid,
            amount_minor=amount,
            reverses=extra.provider_payment_id,
        )
        is None
    ):
        return Result(Outcome.ALREADY_RECORDED)
    money = Money(amount, event.currency)
    audit(
        session,
        f"provider:{event.provider}",
        f"payment.extra_{kind}",
        f"order:{order.order_no}",
        now,
        f"{money} of {extra.provider_payment_id}; {rid}",
    )
    plan, buyer, owner = await _parties(session, order)
    if owner is not None:
        _notify(
            session,
            owner,
            f"owner_extra_{kind}",
            _owner_params(order, plan, buyer, money),
            now,
        )
    return Result(
        Outcome.EXTRA_SETTLED, f"{kind} {money} of extra charge {extra.provider_payment_id}"
    )


# -- PAID: an order's first payment ----------------------------------------------------------


async def _pay_order(
    session: AsyncSession, order: OrderRow, event: PaymentEvent, now: datetime
) -> Result:
    """Settle the order's first payment: check it, move the order to paid, grant."""
    if order.status == "failed" or (
        order.status in ("paid", "refunded") and await _has_own_charge(session, order)
    ):
        return await _pay_settled_order(session, order, event, now)
    if order.status == "paid" or (order.status == "refunded" and order.paid_at is not None):
        await record_payment(session, order, event, "charge", now)
        return Result(Outcome.ALREADY_PAID)
    if order.status == "refunded" or (
        order.status in PAYABLE and await _reversed_before_paid(session, order)
    ):
        # Refunded or disputed before its payment reached us: the money is on record, access
        # is withheld, and a disputed order leaves pending as `failed` (a refunded one stays).
        if await record_payment(session, order, event, "charge", now):
            audit(
                session,
                f"provider:{event.provider}",
                "order.payment_withheld",
                f"order:{order.order_no}",
                now,
                "refunded or disputed before it was paid",
            )
        await session.execute(
            update(Order)
            .where(col(Order.id) == order.id, col(Order.status).in_(PAYABLE))
            .values(status="failed")
        )
        await release_holds(session, order.id, now)
        return Result(Outcome.REVERSED)
    if (event.amount_minor, event.currency) != (order.amount_minor, order.currency):
        return await _flag_mismatch(session, order, event, now)
    if (order.wallet_minor or order.points_used) and not await spend_wallet_part(
        session, order.id, now
    ):
        # Paid late, after the expiry gave the wallet part back and the buyer spent it: the
        # money does not cover the price. Kept apart, like a wrong amount, to be refunded.
        return await _flag_mismatch(session, order, event, now)
    await record_payment(session, order, event, "charge", now)
    # Compare-and-set: only one transaction moves this order to paid, whatever races it.
    moved = (
        await session.execute(
            _MARK_PAID,
            {
                "order_id": order.id,
                "at": now,
                "ref": event.provider_ref or order.provider_ref,
            },
        )
    ).rowcount  # type: ignore[attr-defined]
    if moved != 1:
        return Result(Outcome.ALREADY_PAID)
    if order.topup_id is not None:
        # A top-up: the balance is credited instead of a plan granted, in this transaction.
        await settle_topup(
            session,
            order.id,
            order.order_no,
            order.user_id,
            order.topup_id,
            f"provider:{event.provider}",
            now,
        )
        return Result(Outcome.GRANTED)
    await earn_on_paid(
        session,
        order.id,
        order.user_id,
        order.amount_minor + order.wallet_minor,
        order.currency,
        now,
    )
    # The order.paid audit row goes in with the grant's audit rows (one INSERT), first.
    paid_audit: dict[str, object] = {
        "actor": f"provider:{event.provider}",
        "action": "order.paid",
        "target": f"order:{order.order_no}",
        "at": now,
        "detail": str(Money(event.amount_minor, event.currency))[:1000],
    }
    assert order.plan_id is not None
    await grant_plan(
        session,
        order.user_id,
        order.plan_id,
        now,
        actor=f"provider:{event.provider}",
        reason=f"order {order.order_no}",
        subscription_id=event.subscription_id,
        audit_first=paid_audit,
    )
    return Result(Outcome.GRANTED)


async def apply_paid(session: AsyncSession, event: PaymentEvent, now: datetime) -> Result:
    order = await find_order(session, event)
    if order is None:
        return Result(Outcome.UNKNOWN_ORDER)
    return await _pay_order(session, order, event, now)


# -- RENEWED: a recurring period was paid ----------------------------------------------------


async def apply_renewed(session: AsyncSession, event: PaymentEvent, now: datetime) -> Result:
    """Extend the order's plan to the paid period's end (max with the current end).

    The first invoice may arrive before checkout.session.completed: then it pays the
    pending order itself (checks, compare-and-set, grant) and the session event finds the
    order paid and the same payment id recorded. The buyer hears "extended" only for a
    real renewal: a new payment, not the first period, that moved the end.
    """
    order = await locate_order(session, event)
    if order is None:
        return Result(Outcome.UNKNOWN_ORDER)
    first = False
    if order.status in PAYABLE:
        result = await _pay_order(session, order, event, now)
        if result.outcome is not Outcome.GRANTED:
            return result
        first, new = True, False
    elif order.status in ("failed", "refunded"):
        # A failed order never earns; a refunded one is closed (policy "keep" only lets its
        # access run out, and its subscription was told to stop): any new money is extra.
        return await _pay_order(session, order, event, now)
    else:  # paid: a new period is new money
        new = await record_payment(session, order, event, "charge", now)
    renewal = new and not event.first_period
    if event.period_end is None and not renewal:
        return Result(Outcome.GRANTED if first else Outcome.ALREADY_PAID)
    if order.plan_id is None:
        return Result(Outcome.IGNORED, "a top-up does not renew")
    plan, buyer, _owner = await _parties(session, order)
    found = changed = 0
    for group in await _held_groups(session, buyer, order.plan_id):
        m, moved = await extend_to(
            session,
            # A bundle's group on the other platform is held by the buyer's linked account.
            await account_on(session, buyer, group.platform),
            group,
            event.period_end,
            plan.duration_days,
            now,
            actor=f"provider:{event.provider}",
            reason=f"renewal of order {order.order_no}",
            subscription_id=event.subscription_id,
            notify=renewal,
        )
        found += m is not None and m.status != "revoked"
        changed += moved
    if first:
        return Result(Outcome.GRANTED)
    if not found:
        return Result(Outcome.NO_MEMBERSHIP, f"order {order.order_no}")
    return Result(Outcome.RENEWED if changed and renewal else Outcome.ALREADY_PAID)


# -- PAYMENT_FAILED --------------------------------------------------------------------------


async def apply_payment_failed(session: AsyncSession, event: PaymentEvent, now: datetime) -> Result:
    """Tell the buyer, with the provider's link to fix the payment. Access is not cut here:
    it runs to its paid end, and the lapse job ends it if no payment follows."""
    order = await locate_order(session, event)
    if order is None:
        return Result(Outcome.UNKNOWN_ORDER)
    plan, buyer, _owner = await _parties(session, order)
    if event.subscription_id is None:
        # A checkout's delayed payment (bank debit) failed: this order will not be paid.
        moved = await session.execute(
            update(Order)
            .where(col(Order.id) == order.id, col(Order.status) == "pending")
            .values(status="failed")
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            return Result(Outcome.IGNORED)
        await release_holds(session, order.id, now)
        audit(
            session,
            f"provider:{event.provider}",
            "order.payment_failed",
            f"order:{order.order_no}",
            now,
            event.event_type,
        )
        _notify(
            session, buyer, "payment_failed", {"order_no": order.order_no, "plan": plan.title}, now
        )
        return Result(Outcome.NOTIFIED)
    audit(
        session,
        f"provider:{event.provider}",
        "subscription.payment_failed",
        f"order:{order.order_no}",
        now,
        f"{event.subscription_id} {event.provider_payment_id}",
    )
    buttons: list[dict[str, object]] | None = (
        [{"text_key": "btn_fix_payment", "url": event.action_url}] if event.action_url else None
    )
    _notify(
        session,
        buyer,
        # Without a link (Telegram Stars retries the charge itself): no "fix it here".
        "renewal_payment_failed" if event.action_url else "renewal_payment_failed_nolink",
        {
            "order_no": order.order_no,
            "plan": plan.title,
            "amount": str(Money(event.amount_minor, event.currency)),
            "link": event.action_url or "",
        },
        now,
        buttons,
    )
    return Result(Outcome.NOTIFIED)


# -- SUBSCRIPTION_UPDATED / SUBSCRIPTION_ENDED -----------------------------------------------


async def apply_subscription_state(
    session: AsyncSession, event: PaymentEvent, now: datetime
) -> Result:
    """Track auto-renew on the memberships that carry this subscription.

    Access is never shortened or lengthened here: it runs to the end that paid invoices
    set. (Stripe moves current_period_end at the period boundary, before that period's
    invoice is paid, and the payment may fail: only invoice.paid extends.)
    """
    if not event.subscription_id:
        return Result(Outcome.IGNORED)
    ms = list(
        (
            await session.execute(
                select(Membership)
                .where(col(Membership.provider_subscription_id) == event.subscription_id)
                .order_by(col(Membership.id))
                .with_for_update()
            )
        )
        .scalars()
        .all()
    )
    if not ms:
        return Result(Outcome.IGNORED)  # not granted yet: grant_days sets auto_renew when it is
    if event.kind is EventKind.SUBSCRIPTION_ENDED:
        renew = False
    elif event.cancel_at_period_end is None:
        return Result(Outcome.IGNORED)
    else:
        renew = not event.cancel_at_period_end
    for m in ms:
        if m.auto_renew == renew or m.status in ENDED:
            continue
        m.auto_renew, m.updated_at = renew, now
        audit(
            session,
            f"provider:{event.provider}",
            "membership.auto_renew_on" if renew else "membership.auto_renew_off",
            f"membership:{m.id}",
            now,
            f"{event.event_type} {event.subscription_id}",
        )
    return Result(Outcome.UPDATED)


# -- REFUNDED / DISPUTED ---------------------------------------------------------------------


async def _refunded(session: AsyncSession, order_id: int, payment_id: str) -> int:
    """The order's own refunds on record that name payment `payment_id`."""
    return int(
        (
            await session.execute(
                select(func.coalesce(func.sum(col(Payment.amount_minor)), 0)).where(
                    col(Payment.order_id) == order_id,
                    col(Payment.kind) == "refund",
                    col(Payment.extra).is_(False),
                    col(Payment.reverses) == payment_id,
                )
            )
        ).scalar_one()
    )


async def _keeps_access(session: AsyncSession, owner: User) -> bool:
    """The owner's refund policy is "keep" on this account or on their linked one: one
    business across both platforms, and only Telegram has /refundpolicy, so a plan made
    from WeChat must follow the choice made on Telegram."""
    if owner.refund_policy == "keep":
        return True
    other = None if owner.id is None else await linked_account(session, owner.id)
    return other is not None and other.refund_policy == "keep"


async def apply_reversal(session: AsyncSession, event: PaymentEvent, now: datetime) -> Result:
    """A refund or a dispute: on record once (by the refund's or dispute's own id), the
    owner told, and then, for a full refund or any dispute, the owner's policy applied:
    "revoke" (default) ends access at once, "keep" stops auto-renew and lets it run out.
    The buyer of a refund hears once, with the money, the plan and what became of access
    (a dispute's buyer hears per group that access ended: their bank took the money).

    Arriving before the payment it reverses (events reorder), it still counts: the order is
    marked and that payment, when it comes, grants nothing.
    """
    order = await locate_order(session, event)
    if order is None:
        return Result(Outcome.UNKNOWN_ORDER)
    extra = await _extra_charge_reversed(session, event)
    if extra is not None:
        return await _settle_extra(session, order, extra, event, now)
    dispute = event.kind is EventKind.DISPUTED
    kind = "dispute" if dispute else "refund"
    total = event.amount_minor  # refunds: all refunded on that payment so far
    if event.reversal_amount_minor is not None:
        amount = event.reversal_amount_minor
    elif dispute:
        amount = total
    else:  # only the running total is known: this step is what is not on record yet
        before = (
            await session.execute(
                select(func.coalesce(func.sum(col(Payment.amount_minor)), 0)).where(
                    col(Payment.order_id) == order.id,
                    col(Payment.kind) == "refund",
                    col(Payment.extra).is_(False),
                )
            )
        ).scalar_one()
        amount = max(total - int(before), 0)
    rid = event.reversal_id or f"{event.provider_payment_id or order.order_no}:{kind}:{total}"
    # A refund names the charge it returns: /refund then knows which charges still hold
    # money (Stars refund whole charges, one by one; billing/order_refunds.charges_left).
    if not await record_payment(
        session,
        order,
        event,
        kind,
        now,
        payment_id=rid,
        amount_minor=amount,
        reverses=None if dispute else event.provider_payment_id,
    ):
        return Result(Outcome.ALREADY_RECORDED)
    if not dispute and event.reversal_amount_minor is not None and event.provider_payment_id:
        # A provider that reports each refund alone (WeChat Pay's REFUND.SUCCESS names no
        # running total): the refunds of this payment on record, this one included, are.
        total = max(total, await _refunded(session, order.id, event.provider_payment_id))
    full = dispute or total >= (event.payment_amount_minor or order.amount_minor)
    if full and not dispute:
        await session.execute(
            update(Order)
            .where(col(Order.id) == order.id, col(Order.status).in_(("paid", *PAYABLE)))
            .values(status="refunded")
        )
        if order.wallet_minor or order.points_used:
            # A mixed order: its wallet part goes back with the money (each exactly once:
            # compare-and-set on the holds, keyed entries). Refunded before its payment
            # reached us, the part is still held: released now, as nothing else settles a
            # refunded order's holds (a no-op for a paid order's committed ones).
            await return_holds(session, order.id, now)
            await release_holds(session, order.id, now)
        await reverse_points(session, order.id, now)
    money = Money(amount, event.currency)
    audit(
        session,
        f"provider:{event.provider}",
        f"order.{kind}",
        f"order:{order.order_no}",
        now,
        f"{money}; {'full' if full else 'partial'}; {rid}",
    )
    plan, buyer, owner = await _parties(session, order)
    if owner is not None:
        _notify(
            session,
            owner,
            f"owner_{kind}",
            _owner_params(order, plan, buyer, money),
            now,
        )
    buyer_params: dict[str, object] = {
        "order_no": order.order_no,
        "amount": str(money),
        "plan": plan.title,
    }
    if order.plan_id is None:
        return await _topup_reversed(session, order, event, amount, full, rid, buyer, now)
    if not full:
        if not dispute:
            _notify(session, buyer, "buyer_refund_partial", buyer_params, now)
        return Result(Outcome.PARTIAL_REFUND)
    return await _refund_policy(
        session, order, plan, buyer, owner, event.provider, dispute, buyer_params, now
    )


async def _refund_policy(
    session: AsyncSession,
    order: OrderRow,
    plan: Sold,
    buyer: User,
    owner: User | None,
    provider: str,
    dispute: bool,
    buyer_params: dict[str, object],
    now: datetime,
) -> Result:
    """A full refund or a dispute of `order`: the owner's policy ends or keeps the access,
    renewals stop, and the buyer of a refund hears once."""
    kind = "dispute" if dispute else "refund"
    keep = owner is not None and await _keeps_access(session, owner)
    acted = False
    touched: list[str] = []  # the groups whose access the policy ended or kept
    renewing: set[str] = set()  # subscriptions that would charge again for this access
    assert order.plan_id is not None  # a top-up's refund goes to _topup_reversed
    for group in await _held_groups(session, buyer, order.plan_id):
        holder = await account_on(session, buyer, group.platform)
        m = (
            await session.execute(
                select(Membership)
                .where(
                    col(Membership.user_id) == holder.id,
                    col(Membership.chat_group_id) == group.id,
                )
                .with_for_update()
            )
        ).scalar_one_or_none()
        if m is None or m.status in ENDED:
            continue
        if m.auto_renew and m.provider_subscription_id:
            renewing.add(m.provider_subscription_id)
        if keep:
            if m.auto_renew:
                m.auto_renew, m.updated_at = False, now
                audit(
                    session,
                    f"provider:{provider}",
                    "membership.auto_renew_off",
                    f"membership:{m.id}",
                    now,
                    f"{kind} of order {order.order_no}; kept",
                )
            acted = True
            touched.append(group.title)
        elif m.star_until is not None and m.star_until > now:
            # A channel member who also pays Telegram through a Star subscription link (our
            # plan took over from it): the reversal takes back our time only; access runs to
            # the end Telegram was paid for (membership/channels.py keeps it in step).
            m.expires_at, m.auto_renew, m.updated_at = m.star_until, False, now
            audit(
                session,
                f"provider:{provider}",
                "membership.cut_to_star",
                f"membership:{m.id}",
                now,
                f"{kind} of order {order.order_no}; Telegram paid until {m.star_until.isoformat()}",
            )
        elif await end_access(
            session,
            m,
            now,
            status="revoked",
            actor=f"provider:{provider}",
            reason=f"{kind} of order {order.order_no}",
            # A refund's buyer hears it once, below, with the money and every group.
            notice_key="access_revoked_dispute" if dispute else None,
            notice_params={"order_no": order.order_no},
        ):
            acted = True
            touched.append(group.title)
    for sub in sorted(renewing):
        # Either policy ends the renewals: the provider is told from the outbox, after this
        # commits, and retried until it agrees (billing/provider_calls.py).
        enqueue(
            session,
            "stop_renewal",
            provider,
            {
                "provider": provider,
                "subscription_id": sub,
                "buyer_ref": buyer.platform_user_id,
            },
            now,
        )
    if not dispute:
        key = ("buyer_refund_kept" if keep else "buyer_refund_ended") if acted else "buyer_refund"
        _notify(session, buyer, key, {**buyer_params, "groups": ", ".join(touched)}, now)
    if not acted:
        return Result(Outcome.RECORDED)
    return Result(Outcome.KEPT if keep else Outcome.REVOKED)


async def _topup_reversed(
    session: AsyncSession,
    order: OrderRow,
    event: PaymentEvent,
    amount: int,
    full: bool,
    rid: str,
    buyer: User,
    now: datetime,
) -> Result:
    """A refund or dispute of a top-up: take back from the balance what it credited (the
    bonus too when it all went back), as far as the balance holds it; the buyer hears it."""
    taken, short = await take_back_topup(
        session, order.id, order.user_id, order.currency, amount, full, f"topup_back:{rid}", now
    )
    if short:
        audit(
            session,
            f"provider:{event.provider}",
            "wallet.refund_short",
            f"order:{order.order_no}",
            now,
            f"{Money(short, order.currency)} spent before the reversal",
        )
    _notify(
        session,
        buyer,
        "wallet_topup_refunded",
        {
            "order_no": order.order_no,
            "amount": str(Money(amount, event.currency)),
            "taken": str(Money(taken, order.currency)),
        },
        now,
    )
    return Result(Outcome.RECORDED if full else Outcome.PARTIAL_REFUND)


# -- DISPUTE_CLOSED --------------------------------------------------------------------------


async def apply_refund_failed(session: AsyncSession, event: PaymentEvent, now: datetime) -> Result:
    """A refund the provider took, then could not make (no money moved): the charge it was
    asked of is no longer "refund requested" (else /refund and the one-tap refund answer
    "requested already" for good) and the owner hears it, as of a refund refused at once
    (billing/provider_calls._refused). Nothing is recorded in the ledger."""
    order = await locate_order(session, event)
    if order is None:
        return Result(Outcome.UNKNOWN_ORDER)
    # One failure, reported twice (its notification, and the outbox's query of the refund
    # when that notification seemed lost: billing/provider_calls.refund_check), is told once
    # and clears only its own request, not a newer one. No ledger row carries the refund's
    # id, so its audit record does; the order row, locked above, orders the two reports.
    detail = f"{event.provider_payment_id}: {event.reversal_id} "
    if (
        event.reversal_id
        and (
            await session.execute(
                select(col(AuditLog.id))
                .where(
                    col(AuditLog.action) == "payment.refund_refused",
                    col(AuditLog.target) == f"order:{order.order_no}",
                    col(AuditLog.detail).startswith(detail, autoescape=True),
                )
                .limit(1)
            )
        ).first()
        is not None
    ):
        return Result(Outcome.ALREADY_RECORDED, f"refund {event.reversal_id} failed")
    ids = [i for i in (event.provider_payment_id, *event.payment_refs) if i]
    if ids:
        await session.execute(
            update(Payment)
            .where(
                col(Payment.provider) == event.provider,
                col(Payment.provider_payment_id).in_(ids),
                col(Payment.kind) == "charge",
                col(Payment.refund_requested_at).is_not(None),
            )
            .values(refund_requested_at=None)
            .execution_options(synchronize_session=False)
        )
    money = Money(event.reversal_amount_minor or event.amount_minor, event.currency)
    reason = f"{event.event_type}: no money moved; see the {event.provider} merchant console"
    audit(
        session,
        f"provider:{event.provider}",
        "payment.refund_refused",
        f"order:{order.order_no}",
        now,
        f"{detail}{money}: {reason}"[:1000],
    )
    _, _, owner = await _parties(session, order)
    if owner is not None:
        _notify(
            session,
            owner,
            "owner_refund_failed",
            {"order_no": order.order_no, "reason": reason, "amount": str(money)},
            now,
        )
    return Result(Outcome.NOTIFIED)


async def apply_dispute_closed(session: AsyncSession, event: PaymentEvent, now: datetime) -> Result:
    """The bank decided a dispute. Lost: the money stays with the buyer and access stays
    ended. Won: the money is ours again, recorded as a `dispute_won` row that cancels the
    dispute in the ledger, and the access the dispute ended comes back, unless it ended
    otherwise meanwhile (its time ran out, the owner revoked it, the order was refunded).

    Arriving before the dispute's opening (events reorder), the opening is applied first.
    """
    status = event.dispute_status
    if status not in ("won", "lost") or not event.reversal_id:
        return Result(Outcome.IGNORED)
    order = await locate_order(session, event)
    if order is None:
        return Result(Outcome.UNKNOWN_ORDER, f"dispute {event.reversal_id}")
    opened = await _payment_row(session, event.provider, event.reversal_id, "dispute")
    if opened is None:
        first = Result(Outcome.RECORDED)
        if status == "lost":  # as if the opening had come first: access ends
            first = await apply_reversal(session, replace(event, kind=EventKind.DISPUTED), now)
        else:  # won already: on record as opened (and, below, won); access never taken
            await _record_dispute_opened(session, order, event, now)
        opened = await _payment_row(session, event.provider, event.reversal_id, "dispute")
        if opened is None:
            return first
    money = Money(opened.amount_minor, opened.currency)
    plan, buyer, owner = await _parties(session, order)
    params: dict[str, object] = _owner_params(order, plan, buyer, money)
    if status == "lost":
        audit(
            session,
            f"provider:{event.provider}",
            "order.dispute_lost",
            f"order:{order.order_no}",
            now,
            f"{money}; {event.reversal_id}",
        )
        if owner is not None:
            _notify(session, owner, "owner_dispute_lost", params, now)
        return Result(Outcome.DISPUTE_LOST)
    won = await insert_ignore(
        session,
        Payment,
        {
            "order_id": order.id,
            "provider": event.provider,
            "provider_payment_id": f"{event.reversal_id}:won",
            "kind": "dispute_won",
            "amount_minor": opened.amount_minor,
            "currency": opened.currency,
            "at": now,
            "extra": opened.extra,
            "reverses": event.reversal_id,
        },
        conflict=["provider", "provider_payment_id"],
    )
    if won is None:
        return Result(Outcome.ALREADY_RECORDED)
    restored = False if opened.extra else await _restore_after_dispute(session, order, event, now)
    if order.plan_id is None and not opened.extra:
        # A top-up's dispute took its credit back from the balance (keyed by the dispute's
        # id); won, the buyer paid after all: that balance is theirs again.
        back = await give_back_topup(
            session,
            order.id,
            f"topup_back:{event.reversal_id}",
            f"topup_won:{event.reversal_id}",
            now,
        )
        if back:
            audit(
                session,
                f"provider:{event.provider}",
                "wallet.dispute_won",
                f"order:{order.order_no}",
                now,
                f"{Money(back, order.currency)} back in the balance",
            )
        await _pay_topup_after_dispute(session, order, event, now)
    audit(
        session,
        f"provider:{event.provider}",
        "order.dispute_won",
        f"order:{order.order_no}",
        now,
        f"{money}; {event.reversal_id}; access {'back' if restored else 'unchanged'}",
    )
    if owner is not None:
        _notify(
            session,
            owner,
            "owner_dispute_won_restored" if restored else "owner_dispute_won",
            params,
            now,
        )
    return Result(Outcome.DISPUTE_WON, "access back" if restored else "access unchanged")


async def _pay_topup_after_dispute(
    session: AsyncSession, order: OrderRow, event: PaymentEvent, now: datetime
) -> None:
    """A top-up disputed before its payment reached us failed then, crediting nothing; its
    last dispute won, the buyer paid after all: it is paid now and credited (once, by the
    credit's keys), as a plan order is granted (_restore_after_dispute)."""
    if order.status != "failed" or order.paid_at is not None or order.topup_id is None:
        return
    if await _open_disputes(session, order) > 0 or not await _has_own_charge(session, order):
        return
    moved = await session.execute(
        update(Order)
        .where(col(Order.id) == order.id, col(Order.status) == "failed")
        .values(status="paid", paid_at=now)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        return
    await settle_topup(
        session,
        order.id,
        order.order_no,
        order.user_id,
        order.topup_id,
        f"provider:{event.provider}",
        now,
    )


async def _record_dispute_opened(
    session: AsyncSession, order: OrderRow, event: PaymentEvent, now: datetime
) -> None:
    assert event.reversal_id is not None
    amount = (
        event.reversal_amount_minor
        if event.reversal_amount_minor is not None
        else event.amount_minor
    )
    extra = await _extra_charge_reversed(session, event)
    if extra is not None:
        await _record_extra(
            session,
            order,
            event,
            now,
            kind="dispute",
            payment_id=event.reversal_id,
            amount_minor=amount,
            reverses=extra.provider_payment_id,
        )
    else:
        await record_payment(
            session, order, event, "dispute", now, payment_id=event.reversal_id, amount_minor=amount
        )


async def _restore_after_dispute(
    session: AsyncSession, order: OrderRow, event: PaymentEvent, now: datetime
) -> bool:
    """Give back the access this order's dispute ended; True if some came back."""
    if await _open_disputes(session, order) > 0:
        return False  # another dispute of this order is still open or lost
    actor = f"provider:{event.provider}"
    if order.plan_id is None:
        return False  # a top-up has no access (apply_dispute_closed credits its balance back)
    if order.status == "failed" and order.paid_at is None:
        # Disputed before its payment reached us, so never granted: now it is simply paid.
        if not await _has_own_charge(session, order):
            return False
        moved = await session.execute(
            update(Order)
            .where(col(Order.id) == order.id, col(Order.status) == "failed")
            .values(status="paid", paid_at=now)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            return False
        await grant_plan(
            session,
            order.user_id,
            order.plan_id,
            now,
            actor=actor,
            reason=f"dispute won for order {order.order_no}",
            subscription_id=event.subscription_id,
        )
        return True
    if order.status != "paid":
        return False  # refunded meanwhile: it ended otherwise
    restored = False
    why = f"dispute of order {order.order_no};"
    buyer = await session.get(User, order.user_id)
    assert buyer is not None
    for group in await _held_groups(session, buyer, order.plan_id):
        holder = await account_on(session, buyer, group.platform)
        m = (
            await session.execute(
                select(Membership)
                .where(
                    col(Membership.user_id) == holder.id,
                    col(Membership.chat_group_id) == group.id,
                )
                .with_for_update()
            )
        ).scalar_one_or_none()
        if m is None or m.status != "revoked" or (m.expires_at is not None and m.expires_at <= now):
            continue  # running (policy keep), or ended by time: nothing to give back
        last = (
            await session.execute(
                select(col(AuditLog.detail))
                .where(
                    col(AuditLog.target) == f"membership:{m.id}",
                    col(AuditLog.action) == "membership.revoked",
                )
                .order_by(col(AuditLog.id).desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        if not (last or "").startswith(why):
            continue  # the owner (or a refund) ended it: not ours to undo
        m.status, m.updated_at, m.reminded_at = "active", now, None
        audit(
            session,
            actor,
            "membership.restore",
            f"membership:{m.id}",
            now,
            f"dispute won for order {order.order_no}",
        )
        # Parked access (no linked account on the group's platform) is delivered, as a
        # request to /link, on the buyer's own platform.
        deliver: dict[str, object] = {"membership_id": m.id, "paid": True}
        if holder.platform == group.platform:
            deliver["chat_id"] = group.chat_id
        enqueue(session, "deliver_invite", holder.platform, deliver, now)
        restored = True
    return restored


Handler = Callable[[AsyncSession, PaymentEvent, datetime], Awaitable[Result]]

HANDLERS: dict[EventKind, Handler] = {
    EventKind.PAID: apply_paid,
    EventKind.RENEWED: apply_renewed,
    EventKind.PAYMENT_FAILED: apply_payment_failed,
    EventKind.SUBSCRIPTION_UPDATED: apply_subscription_state,
    EventKind.SUBSCRIPTION_ENDED: apply_subscription_state,
    EventKind.REFUNDED: apply_reversal,
    EventKind.DISPUTED: apply_reversal,
    EventKind.DISPUTE_CLOSED: apply_dispute_closed,
    EventKind.REFUND_FAILED: apply_refund_failed,
}


async def apply_event(session: AsyncSession, event: PaymentEvent, now: datetime) -> Result:
    handler = HANDLERS.get(event.kind)
    if handler is None:
        return Result(Outcome.IGNORED)
    return await handler(session, event, now)


async def refund_wallet_order(
    session: AsyncSession, order_no: str, actor: str, now: datetime
) -> Money | None:
    """/refund of an order the wallet paid whole (no provider to ask): in this transaction
    it is refunded, its balance and points returned, the points it earned taken back, and
    the owner's refund policy applied as for a provider's refund. None when it is not a
    paid wallet order (nothing changed)."""
    row = (await session.execute(_ORDER_BY_NO, {"no": order_no})).first()
    order = None if row is None else _order_row(row)
    if order is None or order.provider != WALLET or order.status != "paid":
        return None
    moved = await session.execute(
        update(Order)
        .where(col(Order.id) == order.id, col(Order.status) == "paid")
        .values(status="refunded")
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        return None
    await return_holds(session, order.id, now)
    await reverse_points(session, order.id, now)
    money = Money(order.wallet_minor + order.points_minor, order.currency)
    audit(session, actor, "order.refund", f"order:{order.order_no}", now, f"{money}; wallet")
    plan, buyer, owner = await _parties(session, order)
    if owner is not None:
        _notify(session, owner, "owner_refund", _owner_params(order, plan, buyer, money), now)
    params: dict[str, object] = {
        "order_no": order.order_no,
        "amount": str(money),
        "plan": plan.title,
    }
    await _refund_policy(session, order, plan, buyer, owner, WALLET, False, params, now)
    return money
