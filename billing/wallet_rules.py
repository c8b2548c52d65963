"""The wallet rules the paid path earns points by.

A payment is settled deep in the ledger (billing.payments, from a webhook, reconciliation or
check-now) where no configuration is passed down; the service sets the [wallet] rules here
once at start. Unset (the wallet turned off, or a tool that never configures it), a payment
earns no points, and nothing else changes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from billing.wallet import WalletRules, earn_points

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
) -> None:
    """Points for the money and balance an order was paid with (never for its points), once
    per order (earn_points' key names the order)."""
    if _rules is None or paid_minor <= 0:
        return
    await earn_points(session, order_id, user_id, paid_minor, currency, _rules, now)
