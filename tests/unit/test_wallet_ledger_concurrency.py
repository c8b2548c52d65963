"""The wallet under concurrent transactions (asyncio.gather over separate sessions): on
PostgreSQL these truly race (READ COMMITTED, many connections); on SQLite the single writer
serialises them, and the outcome must be the same. A buyer's balance can never be overdrawn,
a key applied by many transactions at once counts once, and of an order's settlements run
at once (paid and expired together) exactly one moves its holds."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from billing.wallet import (
    BALANCE,
    POINTS,
    POINTS_CURRENCY,
    InsufficientFunds,
    account_for,
    commit_holds,
    credit,
    debit,
    hold,
    recompute,
    release_holds,
)
from storage.models import Order, WalletAccount, WalletEntry, WalletHold
from storage.queries import get_or_create_user

SPENDERS = 24  # more debits than the balance covers, all at once


async def _funded(db, now, amount: int) -> tuple[int, int]:
    async with db.transaction() as s:
        user = await get_or_create_user(s, "telegram", str(secrets.randbelow(10**9)), now)
        account = await account_for(s, user.id, BALANCE, "CNY", now)
        await credit(s, account, amount, reason="topup", key=f"seed:{account}", now=now)
        return user.id, account


async def _state(db, account_id) -> tuple[int, int]:
    async with db.session() as s:
        cached = (
            await s.execute(
                select(col(WalletAccount.balance)).where(WalletAccount.id == account_id)
            )
        ).scalar_one()
        return cached, await recompute(s, account_id)


async def test_concurrent_debits_never_overdraw(db, now):
    _, account = await _funded(db, now, 1000)

    async def spend(n: int) -> bool:
        try:
            async with db.transaction() as s:
                return await debit(s, account, 70, reason="adjust", key=f"spend:{n}", now=now)
        except InsufficientFunds:
            return False

    spent = await asyncio.gather(*(spend(n) for n in range(SPENDERS)))

    # 1000 covers 14 debits of 70; every other one was refused and left nothing.
    assert sum(spent) == 14
    assert await _state(db, account) == (1000 - 14 * 70, 1000 - 14 * 70)


async def test_one_key_applied_at_once_counts_once(db, now):
    _, account = await _funded(db, now, 100)

    async def topup() -> bool:
        async with db.transaction() as s:
            return await credit(s, account, 500, reason="topup", key="topup:dup", now=now)

    done = await asyncio.gather(*(topup() for _ in range(12)))

    assert sum(done) == 1
    assert await _state(db, account) == (600, 600)
    async with db.session() as s:
        n = (
            await s.execute(
                select(func.count())
                .select_from(WalletEntry)
                .where(WalletEntry.idempotency_key == "topup:dup")
            )
        ).scalar_one()
    assert n == 1


async def test_holds_for_many_orders_at_once_never_overdraw(db, now):
    user, account = await _funded(db, now, 1000)
    async with db.transaction() as s:
        orders = []
        for _ in range(SPENDERS):
            order = Order(
                order_no=f"GPC{secrets.token_hex(5).upper()}",
                user_id=user,
                provider="wallet",
                amount_minor=0,
                currency="CNY",
                created_at=now,
            )
            s.add(order)
            await s.flush()
            orders.append(order.id)

    async def checkout(order_id: int) -> bool:
        try:
            async with db.transaction() as s:
                await hold(s, order_id, [(account, 300)], now)
                return True
        except InsufficientFunds:
            return False

    held = await asyncio.gather(*(checkout(o) for o in orders))
    assert sum(held) == 3
    assert await _state(db, account) == (100, 100)

    # Each held order is paid and expires at the same moment: one of the two wins.
    async def settle(order_id: int, fn) -> int:
        async with db.transaction() as s:
            return await fn(s, order_id, now)

    won = [o for o, ok in zip(orders, held, strict=True) if ok]
    moved = await asyncio.gather(
        *(settle(o, fn) for o in won for fn in (commit_holds, release_holds, release_holds))
    )
    assert [sum(moved[i * 3 : i * 3 + 3]) for i in range(len(won))] == [1] * len(won)
    async with db.session() as s:
        released = (
            await s.execute(
                select(func.coalesce(func.sum(WalletHold.amount), 0)).where(
                    WalletHold.status == "released"
                )
            )
        ).scalar_one()
    assert await _state(db, account) == (100 + released, 100 + released)


async def test_checkouts_naming_the_accounts_in_either_order_do_not_deadlock(db, now):
    user, bal = await _funded(db, now, 100000)
    async with db.transaction() as s:
        pts = await account_for(s, user, POINTS, POINTS_CURRENCY, now)
        await credit(s, pts, 100000, reason="earn", key=f"seed:{pts}", now=now)
        orders = []
        for _ in range(SPENDERS):
            order = Order(
                order_no=f"GPD{secrets.token_hex(5).upper()}",
                user_id=user,
                provider="wallet",
                amount_minor=0,
                currency="CNY",
                created_at=now,
            )
            s.add(order)
            await s.flush()
            orders.append(order.id)

    async def checkout(n: int, order_id: int) -> None:
        parts = [(bal, 10), (pts, 10)]
        async with db.transaction() as s:
            await hold(s, order_id, parts if n % 2 else parts[::-1], now)
            await asyncio.sleep(0)  # let the others take their first lock meanwhile

    await asyncio.gather(*(checkout(n, o) for n, o in enumerate(orders)))

    assert await _state(db, bal) == (100000 - 10 * SPENDERS,) * 2
    assert await _state(db, pts) == (100000 - 10 * SPENDERS,) * 2


async def test_a_hold_names_each_account_once(db, now):
    user, bal = await _funded(db, now, 1000)
    async with db.transaction() as s:
        order = Order(
            order_no=f"GPD{secrets.token_hex(5).upper()}",
            user_id=user,
            provider="wallet",
            amount_minor=0,
            currency="CNY",
            created_at=now,
        )
        s.add(order)
        await s.flush()
        with pytest.raises(ValueError, match="one part per account"):
            await hold(s, order.id, [(bal, 10), (bal, 20)], now)
    assert await _state(db, bal) == (1000, 1000)
