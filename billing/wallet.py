"""The wallet ledger (issue 11): a user's balance per currency and their points, as accounts
whose every change is an append-only, signed entry with a unique idempotency key.

Plain async functions over an AsyncSession; the caller owns the transaction. The account's
`balance` column is a cache of the sum of its entries, moved in the same statement sequence
as the entry it reflects, so the two can never disagree after a commit. A debit is a
compare-and-set (`balance >= amount`) and the CHECK on the table backs it: no interleaving
of transactions can take an account below zero.

Holds are the wallet part of an order: taken at checkout (a "hold" debit), then committed
when the order is paid, released (credited back) when it expires or fails, or returned
(credited back) by a refund. Each move is a compare-and-set on the hold's status, and each
money movement carries a key derived from the order, so doing anything twice does it once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from membership.errors import RuleError
from storage.dialects import insert_ignore
from storage.models import WalletAccount, WalletEntry, WalletHold, table
from storage.money import exponent

BALANCE, POINTS = "balance", "points"
POINTS_CURRENCY = "PTS"

_ACCOUNT = table(WalletAccount)
_ENTRY = table(WalletEntry)
_HOLD = table(WalletHold)

_NEW_ACCOUNT = insert_ignore(_ACCOUNT, ("user_id", "kind", "currency"), returning=())
# RETURNING id: no row back means the key was used already (the unique index decides, so
# two transactions applying one key at once resolve in the database: one inserts, the other
# waits for it and then inserts nothing).
_NEW_ENTRY = insert_ignore(_ENTRY, ("idempotency_key",))
_NEW_HOLD = insert_ignore(_HOLD, ("order_id", "account_id"), returning=())


class InsufficientFunds(RuleError):
    """The account holds less than the debit asks for; nothing was changed."""

    def __init__(self, account_id: int | None = None, amount: int | None = None) -> None:
        super().__init__("wallet_insufficient")
        self.account_id = account_id
        self.amount = amount


# -- points rules ------------------------------------------------------------------------


@dataclass(frozen=True)
class WalletRules:
    """How points are worth money and earned, and the PIN lock ([wallet] in the config)."""

    # Points worth one MAJOR unit of a currency: {"CNY": 10} makes 10 points = 1.00 CNY.
    # A currency without a rate cannot be paid with points.
    points_per_unit: Mapping[str, int]
    # The fewest points one order may use (fewer are not worth a payment line).
    points_min: int
    # The most of an order's price points may pay, in percent.
    points_cap_percent: int
    # Points earned per major unit paid with money or balance (not with points).
    earn_points_per_unit: int
    pin_max_tries: int = 5
    pin_lock_minutes: int = 15


def _rate(rules: WalletRules, currency: str) -> int:
    return rules.points_per_unit.get(currency.upper(), 0)


def points_value(rules: WalletRules, points: int, currency: str) -> int:
    """What `points` are worth in minor units of `currency` (floor; 0 without a rate)."""
    rate = _rate(rules, currency)
    if rate <= 0 or points <= 0:
        return 0
    return points * 10 ** exponent(currency) // rate


def usable_points(rules: WalletRules, available: int, price_minor: int, currency: str) -> int:
    """How many of `available` points one order of `price_minor` may use: at most
    points_cap_percent of the price, never worth more than the price, and 0 when that is
    below points_min or the currency has no rate."""
    rate = _rate(rules, currency)
    if rate <= 0 or available <= 0 or price_minor <= 0:
        return 0
    cap_minor = min(price_minor, price_minor * rules.points_cap_percent // 100)
    # The most points whose (floored) value fits the cap: floor(p * 10^e / rate) <= cap
    # exactly when p * 10^e <= (cap + 1) * rate - 1.
    scale = 10 ** exponent(currency)
    most = ((cap_minor + 1) * rate - 1) // scale
    most = min(available, most)
    value = points_value(rules, most, currency)
    if most < rules.points_min or value <= 0:
        return 0
    # The fewest points worth that much (but never under points_min): a point whose value
    # would be floored away (a rate finer than the minor unit) is not spent for nothing.
    return max(-(-value * rate // scale), rules.points_min)


def points_earned(rules: WalletRules, paid_minor: int, currency: str) -> int:
    """Points earned for paying `paid_minor` of `currency` with money or balance (floor)."""
    if paid_minor <= 0 or rules.earn_points_per_unit <= 0:
        return 0
    return paid_minor * rules.earn_points_per_unit // 10 ** exponent(currency)


# -- accounts and entries ------------------------------------------------------------------


async def account_for(
    session: AsyncSession, user_id: int, kind: str, currency: str, now: datetime
) -> int:
    """The id of the user's account of this kind and currency, created empty if missing.
    Race-safe: the insert does nothing when another transaction created it first."""
    if kind not in (BALANCE, POINTS):
        raise ValueError(f"unknown wallet account kind {kind!r}")
    currency = currency.upper()
    if (kind == POINTS) != (currency == POINTS_CURRENCY):
        raise ValueError(f"a {kind} account cannot be in {currency}")
    await session.execute(
        _NEW_ACCOUNT(session),
        {"user_id": user_id, "kind": kind, "currency": currency, "balance": 0, "updated_at": now},
    )
    found = await session.execute(
        select(_ACCOUNT.c.id).where(
            _ACCOUNT.c.user_id == user_id,
            _ACCOUNT.c.kind == kind,
            _ACCOUNT.c.currency == currency,
        )
    )
    return int(found.scalar_one())


def _positive(amount: int) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ValueError(f"a wallet amount must be a positive int, not {amount!r}")


async def _append(
    session: AsyncSession,
    account_id: int,
    amount: int,
    reason: str,
    key: str,
    now: datetime,
    order_id: int | None,
) -> bool:
    """Insert the entry; False when `key` was used already (nothing inserted)."""
    row = await session.execute(
        _NEW_ENTRY(session),
        {
            "account_id": account_id,
            "amount": amount,
            "reason": reason,
            "order_id": order_id,
            "idempotency_key": key,
            "at": now,
        },
    )
    return row.first() is not None


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
    """Add `amount` to the account; False (and nothing done) when `key` was used already."""
    _positive(amount)
    if not await _append(session, account_id, amount, reason, key, now, order_id):
        return False
    await session.execute(
        update(_ACCOUNT)
        .where(_ACCOUNT.c.id == account_id)
        .values(balance=_ACCOUNT.c.balance + amount, updated_at=now)
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
    """Take `amount` from the account; False (and nothing done) when `key` was used already;
    InsufficientFunds (and nothing done) when the account holds less."""
    _positive(amount)
    # A savepoint, so a debit that finds too little leaves no entry behind even when the
    # caller catches InsufficientFunds and carries on with its transaction.
    # Raising out of the block rolls the savepoint back.
    async with session.begin_nested():
        if not await _append(session, account_id, -amount, reason, key, now, order_id):
            return False
        moved: Any = await session.execute(
            update(_ACCOUNT)
            .where(_ACCOUNT.c.id == account_id, _ACCOUNT.c.balance >= amount)
            .values(balance=_ACCOUNT.c.balance - amount, updated_at=now)
        )
        if moved.rowcount != 1:
            raise InsufficientFunds(account_id, amount)
    return True


# -- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Holding:
    """One account of a user: what it holds now, and what is held for unpaid orders (already
    taken out of `amount`)."""

    kind: str
    currency: str
    amount: int
    held: int


@dataclass(frozen=True)
class Entry:
    """One change of a user's wallet, newest first in recent_entries."""

    kind: str
    currency: str
    amount: int  # signed
    reason: str
    order_id: int | None
    at: datetime


async def balances(session: AsyncSession, user_id: int) -> list[Holding]:
    """Every account of the user (balances by currency, then points)."""
    held = (
        select(_HOLD.c.account_id, func.sum(_HOLD.c.amount).label("held"))
        .where(_HOLD.c.status == "held")
        .group_by(_HOLD.c.account_id)
        .subquery()
    )
    rows = await session.execute(
        select(
            _ACCOUNT.c.kind,
            _ACCOUNT.c.currency,
            _ACCOUNT.c.balance,
            func.coalesce(held.c.held, 0),
        )
        .select_from(_ACCOUNT.outerjoin(held, held.c.account_id == _ACCOUNT.c.id))
        .where(_ACCOUNT.c.user_id == user_id)
        .order_by(_ACCOUNT.c.kind, _ACCOUNT.c.currency)
    )
    return [Holding(r[0], r[1], int(r[2]), int(r[3])) for r in rows]


async def recent_entries(session: AsyncSession, user_id: int, limit: int = 10) -> list[Entry]:
    """The user's last `limit` wallet entries, newest first."""
    rows = await session.execute(
        select(
            _ACCOUNT.c.kind,
            _ACCOUNT.c.currency,
            _ENTRY.c.amount,
            _ENTRY.c.reason,
            _ENTRY.c.order_id,
            _ENTRY.c.at,
        )
        .select_from(_ENTRY.join(_ACCOUNT, _ACCOUNT.c.id == _ENTRY.c.account_id))
        .where(_ACCOUNT.c.user_id == user_id)
        .order_by(_ENTRY.c.id.desc())
        .limit(limit)
    )
    return [Entry(r[0], r[1], int(r[2]), r[3], r[4], r[5]) for r in rows]


async def recompute(session: AsyncSession, account_id: int) -> int:
    """The account's balance from its entries alone (the cache must always equal it)."""
    total = await session.execute(
        select(func.coalesce(func.sum(_ENTRY.c.amount), 0)).where(_ENTRY.c.account_id == account_id)
    )
    return int(total.scalar_one())


# -- holds ---------------------------------------------------------------------------------


async def hold(
    session: AsyncSession, order_id: int, parts: Sequence[tuple[int, int]], now: datetime
) -> None:
    """Take each (account id, amount) for the order and record it as held. All or nothing:
    InsufficientFunds for any part leaves every part untouched. Holding an order again
    takes nothing more."""
    accounts = [account_id for account_id, _ in parts]
    if len(set(accounts)) != len(accounts):
        raise ValueError(f"one part per account, not {list(parts)!r}")
    async with session.begin_nested():
        # In account order: two checkouts of one buyer lock the same rows in the same order
        # (on PostgreSQL), so they wait for each other instead of deadlocking.
        for account_id, amount in sorted(parts):
            taken = await debit(
                session,
                account_id,
                amount,
                reason="hold",
                key=f"hold:{order_id}:{account_id}",
                now=now,
                order_id=order_id,
            )
            if taken:
                await session.execute(
                    _NEW_HOLD(session),
                    {
                        "order_id": order_id,
                        "account_id": account_id,
                        "amount": amount,
                        "status": "held",
                        "created_at": now,
                        "settled_at": None,
                    },
                )


async def _settle(
    session: AsyncSession, order_id: int, old: str, new: str, now: datetime
) -> list[tuple[int, int]]:
    """Move the order's holds from `old` to `new` (compare-and-set on the status, so of two
    transactions doing it at once only one moves each hold); (account id, amount) moved."""
    rows = await session.execute(
        update(_HOLD)
        .where(_HOLD.c.order_id == order_id, _HOLD.c.status == old)
        .values(status=new, settled_at=now)
        .returning(_HOLD.c.account_id, _HOLD.c.amount)
    )
    # Sorted for the same fixed lock order as hold().
    return sorted((int(r[0]), int(r[1])) for r in rows)


async def commit_holds(session: AsyncSession, order_id: int, now: datetime) -> int:
    """The order is paid: its held parts are spent for good. Returns how many holds moved."""
    return len(await _settle(session, order_id, "held", "committed", now))


async def release_holds(session: AsyncSession, order_id: int, now: datetime) -> int:
    """The order expired, failed or was cancelled: give each held part back. Returns how
    many holds were released."""
    moved = await _settle(session, order_id, "held", "released", now)
    for account_id, amount in moved:
        await credit(
            session,
            account_id,
            amount,
            reason="release",
            key=f"release:{order_id}:{account_id}",
            now=now,
            order_id=order_id,
        )
    return len(moved)


async def return_holds(session: AsyncSession, order_id: int, now: datetime) -> int:
    """The paid order was refunded: give each committed part back. Returns how many holds
    were returned."""
    moved = await _settle(session, order_id, "committed", "returned", now)
    for account_id, amount in moved:
        await credit(
            session,
            account_id,
            amount,
            reason="refund",
            key=f"return:{order_id}:{account_id}",
            now=now,
            order_id=order_id,
        )
    return len(moved)


# -- points earned -------------------------------------------------------------------------


async def earn_points(
    session: AsyncSession,
    order_id: int,
    user_id: int,
    paid_minor: int,
    currency: str,
    rules: WalletRules,
    now: datetime,
) -> int:
    """Credit the points the order earns for `paid_minor` paid with money or balance.
    Returns the points credited (0 when it earns none or earned them already)."""
    points = points_earned(rules, paid_minor, currency)
    if points <= 0:
        return 0
    account_id = await account_for(session, user_id, POINTS, POINTS_CURRENCY, now)
    done = await credit(
        session,
        account_id,
        points,
        reason="earn",
        key=f"earn:{order_id}",
        now=now,
        order_id=order_id,
    )
    return points if done else 0


async def reverse_points(session: AsyncSession, order_id: int, now: datetime) -> int:
    """Take back the points the order earned (its refund). Points the buyer already spent
    cannot be taken (an account never goes negative): as many as are there are taken, and
    the shortfall is returned. Doing it again takes nothing more and returns the same."""
    earned = (
        await session.execute(
            select(_ENTRY.c.account_id, _ENTRY.c.amount).where(
                _ENTRY.c.idempotency_key == f"earn:{order_id}"
            )
        )
    ).first()
    if earned is None:
        return 0
    account_id, points = int(earned[0]), int(earned[1])
    key = f"reverse:{order_id}"
    # The account row is locked first (PostgreSQL; SQLite has one writer), so the balance
    # read here is still the balance when the debit runs.
    available = (
        await session.execute(
            select(_ACCOUNT.c.balance).where(_ACCOUNT.c.id == account_id).with_for_update()
        )
    ).scalar_one()
    take = min(points, int(available))
    # A zero entry when nothing could be taken still records that the reversal was done
    # (and how much of it), so a second call neither takes points earned later nor
    # reports a different shortfall.
    if not await _append(session, account_id, -take, "reverse", key, now, order_id):
        done = (
            await session.execute(select(_ENTRY.c.amount).where(_ENTRY.c.idempotency_key == key))
        ).scalar_one()
        return points + int(done)
    if take:
        moved: Any = await session.execute(
            update(_ACCOUNT)
            .where(_ACCOUNT.c.id == account_id, _ACCOUNT.c.balance >= take)
            .values(balance=_ACCOUNT.c.balance - take, updated_at=now)
        )
        # Cannot miss under the row lock; if it ever did, the transaction must not commit.
        if moved.rowcount != 1:
            raise InsufficientFunds(account_id, take)
    return points - take
