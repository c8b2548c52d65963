"""Paying for a plan with the wallet: balance first, then points, the rest at a provider.

The order row and the holds on the buyer's accounts are written in ONE transaction, so a
wallet part is never taken without an order that names it, and an order never claims a
wallet part that was not taken. An order the wallet covers whole is paid in that same
transaction with provider "wallet": nobody else is asked. Otherwise the provider checkout
for the remainder is opened exactly as billing.checkout.open_checkout does (the order is
committed first); if the provider refuses, the holds are released as the order fails.

Later, the order's holds follow its status (billing/payments.py, billing/reconcile.py):
paid commits them and earns points; expired, cancelled or failed releases them; a refund
returns them (billing/order_refunds.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from billing.checkout import Bought, StartedCheckout, checkout_request, new_order_no
from billing.errors import PaymentError
from billing.payments import WALLET
from billing.provider import PaymentProvider
from billing.topup import refund_reserved
from billing.wallet import (
    BALANCE,
    POINTS,
    POINTS_CURRENCY,
    WalletRules,
    account_for,
    commit_holds,
    hold,
    points_value,
    release_holds,
    usable_points,
)
from billing.wallet_settle import earn_for
from membership.errors import RuleError
from membership.grants import grant_plan
from storage.models import Order, Plan, User, WalletAccount, stored_id
from storage.money import Money
from storage.queries import audit, enqueue

WALLET_PROVIDER = WALLET


@dataclass(frozen=True)
class WalletSplit:
    """How a price is paid: balance (minor units), points (count and value), the rest."""

    wallet_minor: int
    points_used: int
    points_minor: int
    remainder_minor: int


async def _balance_of(session: AsyncSession, user_id: int, kind: str, currency: str) -> int:
    row = (
        await session.execute(
            select(col(WalletAccount.balance)).where(
                col(WalletAccount.user_id) == user_id,
                col(WalletAccount.kind) == kind,
                col(WalletAccount.currency) == currency,
            )
        )
    ).scalar_one_or_none()
    return int(row or 0)


def _points_within(rules: WalletRules, most: int, minor: int, currency: str) -> int:
    """The most points (at most `most`) worth no more than `minor`: points_value is monotone,
    so a binary search finds it with exact integer math."""
    lo, hi = 0, most
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if points_value(rules, mid, currency) <= minor:
            lo = mid
        else:
            hi = mid - 1
    return lo


async def plan_split(
    session: AsyncSession,
    user_id: int,
    price: Money,
    rules: WalletRules,
    *,
    use_balance: bool,
    use_points: bool,
) -> WalletSplit:
    """What the buyer's wallet pays of `price` now: as much balance as there is, then the
    usable points (capped by the rules, never worth more than what is left)."""
    total = price.amount_minor
    wallet = 0
    if use_balance:
        # A top-up being refunded keeps its credit until the refund lands (billing/topup.py).
        spendable = await _balance_of(session, user_id, BALANCE, price.currency)
        spendable -= await refund_reserved(session, user_id, price.currency)
        wallet = max(min(total, spendable), 0)
    rest = total - wallet
    points = 0
    if use_points and rest > 0:
        available = await _balance_of(session, user_id, POINTS, POINTS_CURRENCY)
        capped = usable_points(rules, available, total, price.currency)
        points = _points_within(rules, capped, rest, price.currency)
        value = points_value(rules, points, price.currency)
        if points < rules.points_min or value <= 0:
            points = 0
        else:
            # The fewest points worth that value (never under points_min): with a rate finer
            # than the minor unit, points beyond it would be floored away, lost to the buyer.
            fewest = _points_within(rules, points, value - 1, price.currency) + 1
            points = max(fewest, rules.points_min)
    points_minor = points_value(rules, points, price.currency) if points else 0
    return WalletSplit(wallet, points, points_minor, rest - points_minor)


def _describe(split: WalletSplit, currency: str, provider: str) -> str:
    return (
        f"balance {Money(split.wallet_minor, currency)}; points {split.points_used} "
        f"({Money(split.points_minor, currency)}); {provider} "
        f"{Money(split.remainder_minor, currency)}"
    )


async def open_wallet_checkout(
    session: AsyncSession,
    user: User,
    plan: Plan,
    price: Money,
    provider: PaymentProvider | None,
    *,
    use_balance: bool,
    use_points: bool,
    rules: WalletRules,
    now: datetime,
    public_url: str,
    timeout: timedelta,
    chosen_at: datetime | None = None,
) -> StartedCheckout:
    """Open an order paid (in part or whole) from the buyer's wallet.

    `chosen_at` is when the buyer was shown the wallet choice: a wallet order for this plan
    opened since then (pending or paid) means the same choice was made again (a double tap,
    a replayed button), refused with RuleError "wallet_choice_used" instead of paying twice.

    Raises RuleError "wallet_not_enough" when the wallet does not cover the price and there
    is no provider for the rest, "wallet_nothing_to_use" when the wallet pays nothing,
    InsufficientFunds when the balance was spent meanwhile (nothing is written),
    PaymentError when the provider refuses (the order is then failed, its holds released).
    A fully covered order comes back paid, with shown "link" and no checkout_url.
    """
    if plan.recurring:
        # A renewal charges the provider again each period; the wallet part of the first
        # period would leave every later one short. Subscriptions are paid by the provider.
        raise RuleError("wallet_recurring")
    user_id = stored_id(user)
    split = await plan_split(
        session, user_id, price, rules, use_balance=use_balance, use_points=use_points
    )
    if split.wallet_minor == 0 and split.points_used == 0:
        raise RuleError("wallet_nothing_to_use")
    if split.remainder_minor > 0 and provider is None:
        raise RuleError("wallet_not_enough", rest=str(Money(split.remainder_minor, price.currency)))
    if split.remainder_minor > 0 and provider is not None and not provider.accepts(price.currency):
        raise PaymentError(f"{provider.name} does not accept {price.currency}")
    name = provider.name if provider is not None and split.remainder_minor > 0 else WALLET
    order = Order(
        order_no=new_order_no(),
        user_id=user_id,
        kind="plan",
        plan_id=stored_id(plan),
        provider=name,
        amount_minor=split.remainder_minor,
        currency=price.currency,
        wallet_minor=split.wallet_minor,
        points_used=split.points_used,
        points_minor=split.points_minor,
        status="pending",
        created_at=now,
        expires_at=now + timeout,
    )
    parts: list[tuple[int, int]] = []
    try:
        session.add(order)
        await session.flush()
        assert order.id is not None
        if split.wallet_minor:
            account = await account_for(session, user_id, BALANCE, price.currency, now)
            parts.append((account, split.wallet_minor))
        if split.points_used:
            account = await account_for(session, user_id, POINTS, POINTS_CURRENCY, now)
            parts.append((account, split.points_used))
        # A spend elsewhere between reading the balance and here makes a debit's
        # compare-and-set miss: InsufficientFunds, and the rollback undoes the order too.
        await hold(session, order.id, parts, now)
        if chosen_at is not None:
            await _refuse_a_used_choice(session, order, chosen_at)
        audit(
            session,
            f"user:{user.id}",
            "order.create",
            f"order:{order.order_no}",
            now,
            f"{plan.title}; {price}; {_describe(split, price.currency, name)}"[:1000],
        )
        if split.remainder_minor == 0:
            await _pay_from_wallet(session, order, plan, user, price, rules, now)
        await session.commit()
    except BaseException:
        await session.rollback()
        raise
    if split.remainder_minor == 0 or provider is None:
        return StartedCheckout(order, "link")
    try:
        assert order.amount_minor == split.remainder_minor
        bought = Bought(plan.title, plan.recurring, plan.duration_days, {"plan_id": str(plan.id)})
        checkout = await provider.create_checkout(checkout_request(order, bought, user, public_url))
    except PaymentError as e:
        await fail_order(session, order, now, str(e))
        raise
    order.provider_ref, order.checkout_url = checkout.provider_ref, checkout.url or None
    await session.commit()
    return StartedCheckout(order, checkout.shown)


async def _refuse_a_used_choice(session: AsyncSession, order: Order, chosen_at: datetime) -> None:
    # Checked after the holds, not before: two taps at the same moment read the same wallet,
    # so they hold the same accounts, and the second's hold waits on the first's row locks
    # (PostgreSQL; SQLite has one writer) until the first's order is committed and seen
    # here. No lock of its own, so no new lock order to deadlock with.
    used = (
        await session.execute(
            select(col(Order.order_no))
            .where(
                col(Order.id) != order.id,
                col(Order.user_id) == order.user_id,
                col(Order.plan_id) == order.plan_id,
                col(Order.created_at) > chosen_at,
                col(Order.status).in_(("pending", "paid")),
                (col(Order.wallet_minor) > 0) | (col(Order.points_used) > 0),
            )
            .limit(1)
        )
    ).scalar_one_or_none()
    if used is not None:
        raise RuleError("wallet_choice_used", order_no=used)


async def fail_order(session: AsyncSession, order: Order, now: datetime, why: str) -> None:
    """The provider refused the remainder's checkout: the order fails (compare-and-set on
    pending) and its holds come back, in one transaction."""
    assert order.id is not None
    moved = await session.execute(
        update(Order)
        .where(col(Order.id) == order.id, col(Order.status) == "pending")
        .values(status="failed")
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount == 1:  # type: ignore[attr-defined]
        await release_holds(session, order.id, now)
        audit(session, "system", "order.checkout_failed", f"order:{order.order_no}", now, why)
    await session.commit()
    await session.refresh(order)


async def _pay_from_wallet(
    session: AsyncSession,
    order: Order,
    plan: Plan,
    user: User,
    price: Money,
    rules: WalletRules,
    now: datetime,
) -> None:
    """The wallet covered the price: the order is paid now, no provider involved."""
    assert order.id is not None
    order.status, order.paid_at = "paid", now
    await session.flush()
    await commit_holds(session, order.id, now)
    # Points are earned on money and balance, never on points.
    earned = await earn_for(
        session, order.id, order.user_id, order.wallet_minor, order.currency, rules, now
    )
    await grant_plan(
        session,
        order.user_id,
        stored_id(plan),
        now,
        actor=f"user:{user.id}",
        reason=f"order {order.order_no}",
        audit_first={
            "actor": f"user:{user.id}",
            "action": "order.paid",
            "target": f"order:{order.order_no}",
            "at": now,
            "detail": f"{price} from the wallet",
        },
    )
    enqueue(
        session,
        "notify",
        user.platform,
        {
            "user_id": user.platform_user_id,
            # "You earned 0 points" says nothing: a price points are not earned in gets none.
            "key": "wallet_paid" if earned else "wallet_paid_no_points",
            "params": {
                "order_no": order.order_no,
                "plan": plan.title,
                "amount": str(price),
                "points": earned,
            },
            "language": user.language,
        },
        now,
    )
