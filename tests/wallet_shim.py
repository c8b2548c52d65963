"""A minimal stand-in for billing/wallet.py (helper "wl" writes the real one, in parallel)
so the top-up tests can run before it merges: the same signatures, the simplest honest
behaviour. Installed by tests/conftest.py ONLY when `billing.wallet` cannot be imported;
once the real module lands this file is never used (and can be deleted)."""

from __future__ import annotations

import importlib.util
import sys
import types
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from membership.errors import RuleError
from storage.models import WalletAccount, WalletEntry
from storage.queries import insert_ignore

BALANCE, POINTS = "balance", "points"
POINTS_CURRENCY = "PTS"


class InsufficientFunds(RuleError):
    def __init__(self) -> None:
        super().__init__("wallet_insufficient")


@dataclass(frozen=True)
class Holding:
    kind: str
    currency: str
    amount: int
    held: int


async def account_for(
    session: AsyncSession, user_id: int, kind: str, currency: str, now: datetime
) -> int:
    await insert_ignore(
        session,
        WalletAccount,
        {"user_id": user_id, "kind": kind, "currency": currency, "balance": 0, "updated_at": now},
        ["user_id", "kind", "currency"],
    )
    return int(
        (
            await session.execute(
                select(col(WalletAccount.id)).where(
                    col(WalletAccount.user_id) == user_id,
                    col(WalletAccount.kind) == kind,
                    col(WalletAccount.currency) == currency,
                )
            )
        ).scalar_one()
    )


async def _entry(
    session: AsyncSession,
    account_id: int,
    amount: int,
    reason: str,
    key: str,
    now: datetime,
    order_id: int | None,
) -> bool:
    new = await insert_ignore(
        session,
        WalletEntry,
        {
            "account_id": account_id,
            "amount": amount,
            "reason": reason,
            "order_id": order_id,
            "idempotency_key": key,
            "at": now,
        },
        ["idempotency_key"],
    )
    return new is not None


async def credit(
    session: AsyncSession,
    account_id: int,
    amount: int,
    *,
    reason: str,
    key: str,
    now: datetime,
    order_id: int | None = None,
) -> bool:
    assert amount > 0
    if not await _entry(session, account_id, amount, reason, key, now, order_id):
        return False
    await session.execute(
        update(WalletAccount)
        .where(col(WalletAccount.id) == account_id)
        .values(balance=col(WalletAccount.balance) + amount, updated_at=now)
    )
    return True


async def debit(
    session: AsyncSession,
    account_id: int,
    amount: int,
    *,
    reason: str,
    key: str,
    now: datetime,
    order_id: int | None = None,
) -> bool:
    assert amount > 0
    moved = await session.execute(
        update(WalletAccount)
        .where(col(WalletAccount.id) == account_id, col(WalletAccount.balance) >= amount)
        .values(balance=col(WalletAccount.balance) - amount, updated_at=now)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise InsufficientFunds()
    if not await _entry(session, account_id, -amount, reason, key, now, order_id):
        await session.execute(
            update(WalletAccount)
            .where(col(WalletAccount.id) == account_id)
            .values(balance=col(WalletAccount.balance) + amount)
        )
        return False
    return True


async def balances(session: AsyncSession, user_id: int) -> list[Holding]:
    rows = (
        (
            await session.execute(
                select(WalletAccount)
                .where(col(WalletAccount.user_id) == user_id)
                .order_by(col(WalletAccount.kind), col(WalletAccount.currency))
                .execution_options(populate_existing=True)
            )
        )
        .scalars()
        .all()
    )
    return [Holding(a.kind, a.currency, a.balance, 0) for a in rows]


async def recent_entries(session: AsyncSession, user_id: int, limit: int = 10) -> list[WalletEntry]:
    return list(
        (
            await session.execute(
                select(WalletEntry)
                .join(WalletAccount, col(WalletAccount.id) == col(WalletEntry.account_id))
                .where(col(WalletAccount.user_id) == user_id)
                .order_by(col(WalletEntry.id).desc())
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )


async def recompute(session: AsyncSession, account_id: int) -> int:
    return int(
        (
            await session.execute(
                select(func.coalesce(func.sum(col(WalletEntry.amount)), 0)).where(
                    col(WalletEntry.account_id) == account_id
                )
            )
        ).scalar_one()
    )


def install() -> None:
    """Register this module as `billing.wallet` unless the real one exists."""
    if importlib.util.find_spec("billing.wallet") is None:
        mod = types.ModuleType("billing.wallet")
        mod.__dict__.update(
            {k: v for k, v in globals().items() if not k.startswith("__") and k != "install"}
        )
        sys.modules["billing.wallet"] = mod
        sys.modules["billing"].__dict__["wallet"] = mod
