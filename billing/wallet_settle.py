"""The wallet side of settling a plan order's payment (billing/payments.py): its wallet
part spent, and the points it earns.

A payment is settled deep in the ledger (billing.payments, from a webhook, reconciliation or
check-now) where no configuration is passed down; the service sets the [wallet] rules here
once at start. Unset (the wallet turned off, or a tool that never configures it), a payment
earns no points, and nothing else changes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from billing.wallet import InsufficientFunds, WalletRules, commit_holds, debit, earn_points
from storage.models import WalletHold

_rules: WalletRules | None = None


def use_wallet_rules(rules: WalletRules | None) -> None:
    global _rules
    _rules = rules


def wallet_rules() -> WalletRules | None:
    return _rules


async def earn_on_paid(
    session: AsyncSession,
    order_id: int,
    user_id: int,
    paid_minor: int,
    currency: str,
    now: datetime,
) -> int:
    """earn_for with the configured rules (none configured: nothing earned)."""
    if _rules is None:
        return 0
    return await earn_for(session, order_id, user_id, paid_minor, currency, _rules, now)


async def earn_for(
    session: AsyncSession,
    order_id: int,
    user_id: int,
    paid_minor: int,
    currency: str,
    rules: WalletRules,
    now: datetime,
) -> int:
    """Points for the money and balance an order was paid with (never for its points), once
    per order (earn_points' key names the order). Only in a currency points can pay (the
    rules give it a rate): Telegram Stars, or a currency points are not worth anything in,
    earn none."""
    if paid_minor <= 0 or rules.points_per_unit.get(currency.upper(), 0) <= 0:
        return 0
    return await earn_points(session, order_id, user_id, paid_minor, currency, rules, now)


async def spend_wallet_part(session: AsyncSession, order_id: int, now: datetime) -> bool:
    """The order's provider part is paid: spend its wallet part. Held parts are committed.
    Parts released already (the order expired, then a late payment came: payments honour
    it) are taken again now, all or nothing; False when the wallet no longer holds them
    (nothing changed: the caller treats the payment as not covering the price)."""
    await commit_holds(session, order_id, now)
    released = (
        await session.execute(
            select(col(WalletHold.id), col(WalletHold.account_id), col(WalletHold.amount))
            .where(col(WalletHold.order_id) == order_id, col(WalletHold.status) == "released")
            # Accounts in id order, as checkout's holds take them: no deadlock between the two.
            .order_by(col(WalletHold.account_id))
        )
    ).all()
    if not released:
        return True
    try:
        async with session.begin_nested():
            for hold_id, account_id, amount in released:
                await debit(
                    session,
                    int(account_id),
                    int(amount),
                    reason="hold",
                    key=f"retake:{order_id}:{account_id}",
                    now=now,
                    order_id=order_id,
                )
                await session.execute(
                    update(WalletHold)
                    .where(col(WalletHold.id) == hold_id, col(WalletHold.status) == "released")
                    .values(status="committed", settled_at=now)
                    .execution_options(synchronize_session=False)
                )
    except InsufficientFunds:
        return False
    return True
