"""The wallet ledger (billing/wallet.py) as the top-up and checkout paths use it: credits and
debits with idempotency keys, holds taken at checkout and then committed, released or
returned, and points earned and reversed. Every account's balance must stay the sum of its
entries and never go below zero."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlmodel import col

from billing.wallet import (
    BALANCE,
    POINTS,
    POINTS_CURRENCY,
    Holding,
    InsufficientFunds,
    WalletRules,
    account_for,
    balances,
    commit_holds,
    credit,
    debit,
    earn_points,
    hold,
    points_earned,
    points_value,
    recent_entries,
    recompute,
    release_holds,
    return_holds,
    reverse_points,
    usable_points,
)
from membership.errors import RuleError
from storage.models import Order, WalletAccount, WalletHold
from storage.queries import get_or_create_user

RULES = WalletRules(
    points_per_unit={"CNY": 10}, points_min=10, points_cap_percent=50, earn_points_per_unit=1
)


async def _buyer(db, now) -> int:
    async with db.transaction() as s:
        user = await get_or_create_user(s, "telegram", str(secrets.randbelow(10**9)), now)
        return user.id


async def _order(db, user_id, now) -> int:
    """A pending wallet-paid order row (the holds' orders)."""
    async with db.transaction() as s:
        order = Order(
            order_no=f"GPW{secrets.token_hex(4).upper()}",
            user_id=user_id,
            provider="wallet",
            amount_minor=0,
            currency="CNY",
            status="pending",
            created_at=now,
        )
        s.add(order)
        await s.flush()
        return order.id


async def _accounts(db, user_id, now) -> tuple[int, int]:
    async with db.transaction() as s:
        return (
            await account_for(s, user_id, BALANCE, "CNY", now),
            await account_for(s, user_id, POINTS, POINTS_CURRENCY, now),
        )


async def _balance(db, account_id) -> int:
    """The cached balance, checked against the sum of the entries."""
    async with db.session() as s:
        cached = (
            await s.execute(
                select(col(WalletAccount.balance)).where(WalletAccount.id == account_id)
            )
        ).scalar_one()
        assert cached == await recompute(s, account_id)
    return cached


async def test_account_for_makes_one_account_per_kind_and_currency(db, now):
    user = await _buyer(db, now)
    async with db.transaction() as s:
        first = await account_for(s, user, BALANCE, "cny", now)
        again = await account_for(s, user, BALANCE, "CNY", now)
        usd = await account_for(s, user, BALANCE, "USD", now)
        pts = await account_for(s, user, POINTS, POINTS_CURRENCY, now)
        with pytest.raises(ValueError, match="points account cannot be in CNY"):
            await account_for(s, user, POINTS, "CNY", now)
        with pytest.raises(ValueError, match="unknown wallet account kind"):
            await account_for(s, user, "gold", "CNY", now)
    assert first == again and len({first, usd, pts}) == 3


async def test_credit_and_debit_move_the_balance_and_a_key_counts_once(db, now):
    user = await _buyer(db, now)
    bal, _ = await _accounts(db, user, now)
    async with db.transaction() as s:
        assert await credit(s, bal, 10000, reason="topup", key="topup:t1", now=now)
        assert not await credit(s, bal, 10000, reason="topup", key="topup:t1", now=now)
        assert await debit(s, bal, 2500, reason="adjust", key="spend:1", now=now)
        assert not await debit(s, bal, 2500, reason="adjust", key="spend:1", now=now)
    assert await _balance(db, bal) == 7500
    async with db.session() as s:
        entries = await recent_entries(s, user)
    assert [(e.reason, e.amount, e.currency) for e in entries] == [
        ("adjust", -2500, "CNY"),
        ("topup", 10000, "CNY"),
    ]


async def test_a_debit_beyond_the_balance_changes_nothing(db, now):
    user = await _buyer(db, now)
    bal, _ = await _accounts(db, user, now)
    async with db.transaction() as s:
        await credit(s, bal, 500, reason="topup", key="topup:t2", now=now)
    async with db.transaction() as s:
        with pytest.raises(InsufficientFunds) as refused:
            await debit(s, bal, 501, reason="adjust", key="spend:2", now=now)
        # The caller carried on in the same transaction, and commits it.
        assert await credit(s, bal, 1, reason="bonus", key="bonus:2", now=now)
    assert isinstance(refused.value, RuleError) and refused.value.key == "wallet_insufficient"
    assert await _balance(db, bal) == 501
    # The refused debit left no entry, so its key is still free.
    async with db.transaction() as s:
        assert await debit(s, bal, 501, reason="adjust", key="spend:2", now=now)
    assert await _balance(db, bal) == 0


@pytest.mark.parametrize("amount", [0, -5, True, 1.5])
async def test_amounts_must_be_positive_integers(db, now, amount):
    user = await _buyer(db, now)
    bal, _ = await _accounts(db, user, now)
    async with db.transaction() as s:
        for move in (credit, debit):
            with pytest.raises(ValueError, match="positive int"):
                await move(s, bal, amount, reason="adjust", key=f"k{amount}", now=now)
    assert await _balance(db, bal) == 0


async def test_hold_then_release_gives_back_exactly(db, now):
    user = await _buyer(db, now)
    bal, pts = await _accounts(db, user, now)
    order = await _order(db, user, now)
    async with db.transaction() as s:
        await credit(s, bal, 1000, reason="topup", key="topup:h1", now=now)
        await credit(s, pts, 300, reason="earn", key="earn:h1", now=now)
        await hold(s, order, [(bal, 700), (pts, 200)], now)
        await hold(s, order, [(bal, 700), (pts, 200)], now)  # a retry takes nothing more
        assert await balances(s, user) == [
            Holding(BALANCE, "CNY", 300, 700),
            Holding(POINTS, POINTS_CURRENCY, 100, 200),
        ]
    later = now + timedelta(hours=1)
    async with db.transaction() as s:
        assert await release_holds(s, order, later) == 2
        assert await release_holds(s, order, later) == 0
        assert await commit_holds(s, order, later) == 0  # released: nothing to commit
    assert (await _balance(db, bal), await _balance(db, pts)) == (1000, 300)
    async with db.session() as s:
        assert await balances(s, user) == [
            Holding(BALANCE, "CNY", 1000, 0),
            Holding(POINTS, POINTS_CURRENCY, 300, 0),
        ]
        statuses = (
            await s.execute(select(col(WalletHold.status), col(WalletHold.settled_at)))
        ).all()
    assert statuses == [("released", later), ("released", later)]


async def test_a_hold_that_cannot_be_covered_takes_no_part(db, now):
    user = await _buyer(db, now)
    bal, pts = await _accounts(db, user, now)
    order = await _order(db, user, now)
    async with db.transaction() as s:
        await credit(s, bal, 1000, reason="topup", key="topup:h2", now=now)
        await credit(s, pts, 50, reason="earn", key="earn:h2", now=now)
    async with db.transaction() as s:
        with pytest.raises(InsufficientFunds):
            await hold(s, order, [(bal, 700), (pts, 51)], now)
    assert (await _balance(db, bal), await _balance(db, pts)) == (1000, 50)
    async with db.session() as s:
        assert (await s.execute(select(WalletHold))).first() is None
    async with db.transaction() as s:  # the keys are still free for a hold that fits
        await hold(s, order, [(bal, 700), (pts, 50)], now)
    assert (await _balance(db, bal), await _balance(db, pts)) == (300, 0)


async def test_committed_holds_are_spent_and_a_refund_returns_them_once(db, now):
    user = await _buyer(db, now)
    bal, _ = await _accounts(db, user, now)
    order = await _order(db, user, now)
    async with db.transaction() as s:
        await credit(s, bal, 990, reason="topup", key="topup:h3", now=now)
        await hold(s, order, [(bal, 990)], now)
        assert await commit_holds(s, order, now) == 1
        assert await commit_holds(s, order, now) == 0
        assert await release_holds(s, order, now) == 0  # paid: an expiry gives nothing back
    assert await _balance(db, bal) == 0
    async with db.transaction() as s:
        assert await return_holds(s, order, now) == 1
        assert await return_holds(s, order, now) == 0
    assert await _balance(db, bal) == 990
    async with db.session() as s:
        reasons = [e.reason for e in await recent_entries(s, user)]
    assert reasons == ["refund", "hold", "topup"]


async def test_points_earned_and_reversed_once(db, now):
    user = await _buyer(db, now)
    order = await _order(db, user, now)
    async with db.transaction() as s:
        # 99.00 CNY paid with money or balance earns 99 points.
        assert await earn_points(s, order, user, 9900, "CNY", RULES, now) == 99
        assert await earn_points(s, order, user, 9900, "CNY", RULES, now) == 0
    _, pts = await _accounts(db, user, now)
    assert await _balance(db, pts) == 99
    async with db.transaction() as s:
        assert await reverse_points(s, order, now) == 0
        assert await reverse_points(s, order, now) == 0
    assert await _balance(db, pts) == 0


async def test_reversing_points_already_spent_takes_what_is_there(db, now):
    user = await _buyer(db, now)
    order, other = await _order(db, user, now), await _order(db, user, now)
    async with db.transaction() as s:
        await earn_points(s, order, user, 9900, "CNY", RULES, now)
    _, pts = await _accounts(db, user, now)
    async with db.transaction() as s:
        await hold(s, other, [(pts, 60)], now)  # the buyer spent 60 of the 99
        assert await reverse_points(s, order, now) == 60
    assert await _balance(db, pts) == 0
    async with db.transaction() as s:
        # Points earned later are not taken by a second reversal of the same order.
        await credit(s, pts, 40, reason="adjust", key="later", now=now)
        assert await reverse_points(s, order, now) == 60
    assert await _balance(db, pts) == 40


async def test_reversing_when_nothing_is_left_and_when_nothing_was_earned(db, now):
    user = await _buyer(db, now)
    order, spent_on, never = [await _order(db, user, now) for _ in range(3)]
    async with db.transaction() as s:
        await earn_points(s, order, user, 2000, "CNY", RULES, now)
    _, pts = await _accounts(db, user, now)
    async with db.transaction() as s:
        await hold(s, spent_on, [(pts, 20)], now)
        assert await reverse_points(s, order, now) == 20
        assert await reverse_points(s, never, now) == 0
        assert await earn_points(s, never, user, 99, "CNY", RULES, now) == 0  # under 1 CNY
    assert await _balance(db, pts) == 0


def test_points_rules_examples():
    assert points_value(RULES, 25, "CNY") == 250  # 10 points = 1.00 CNY
    assert points_value(RULES, 25, "USD") == 0  # no rate: points cannot pay
    assert points_value(WalletRules({"JPY": 10}, 1, 100, 1), 25, "JPY") == 2  # floor
    assert usable_points(RULES, 1000, 990, "CNY") == 49  # at most half of 9.90 CNY
    assert usable_points(RULES, 30, 990, "CNY") == 30
    assert usable_points(RULES, 9, 990, "CNY") == 0  # fewer than points_min
    assert usable_points(RULES, 1000, 990, "USD") == 0
    assert usable_points(RULES, 1000, 10, "CNY") == 0  # 0.05 CNY cap: not even 1 point
    fine = WalletRules({"CNY": 1000}, 1, 50, 1)  # 1 point = 0.1 fen
    assert usable_points(fine, 10**6, 3, "CNY") == 10  # cap 1 fen: 10 points, not 19
    assert points_earned(RULES, 9999, "CNY") == 99
    assert points_earned(RULES, 500, "JPY") == 500  # JPY has no minor unit


@given(
    rate=st.integers(1, 1000),
    points_min=st.integers(1, 100),
    cap=st.integers(0, 100),
    available=st.integers(0, 10**7),
    price=st.integers(0, 10**8),
    currency=st.sampled_from(["CNY", "JPY", "KWD"]),
)
def test_usable_points_never_pay_more_than_the_cap(
    rate, points_min, cap, available, price, currency
):
    rules = WalletRules({currency: rate}, points_min, cap, 1)
    used = usable_points(rules, available, price, currency)
    assert 0 <= used <= available
    assert used == 0 or used >= points_min
    assert points_value(rules, used, currency) <= price * cap // 100 <= price
    # No point is spent for nothing: one fewer would be worth less (or be under the minimum).
    if used:
        assert points_value(rules, used, currency) > 0
        assert used == points_min or (
            points_value(rules, used - 1, currency) < points_value(rules, used, currency)
        )
    # And none could pay more: more points are worth the same or more than the cap allows.
    best = points_value(rules, used, currency)
    for more in range(used + 1, min(available, used + rate) + 1):
        worth = points_value(rules, more, currency)
        assert worth == best or worth > price * cap // 100 or more < points_min
