"""Property-based (hypothesis) runs of the wallet ledger, on SQLite and PostgreSQL: random
interleavings of top-up credits (keys sometimes repeated, as a duplicate webhook repeats
them), direct spends, holds for a few orders (balance and points parts), commits, releases,
returns, points earned and reversed, each in a transaction of its own, checked step by step
against a plain model of what the buyer should have:

- every account's cached balance equals the sum of its entries, and the model;
- no account ever goes negative (a refused spend or hold changes nothing at all);
- a released hold gives back exactly what it took; a returned one likewise;
- a key applied twice counts once;
- balances() reports as held exactly the holds still held.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlmodel import col

from billing.wallet import (
    BALANCE,
    POINTS,
    POINTS_CURRENCY,
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
    recompute,
    release_holds,
    return_holds,
    reverse_points,
)
from storage.models import Order, WalletAccount
from storage.queries import get_or_create_user

RULES = WalletRules(
    points_per_unit={"CNY": 10}, points_min=10, points_cap_percent=50, earn_points_per_unit=1
)
ORDERS = 3
_seq = itertools.count(1)

amounts = st.integers(1, 3000)
order_ix = st.integers(0, ORDERS - 1)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("topup"), st.integers(0, 4), amounts),
        st.tuples(st.just("spend"), st.integers(0, 4), amounts),
        st.tuples(
            st.just("hold"),
            order_ix,
            st.one_of(st.none(), amounts),
            st.one_of(st.none(), st.integers(1, 300)),
        ),
        st.tuples(st.just("commit"), order_ix),
        st.tuples(st.just("release"), order_ix),
        st.tuples(st.just("return"), order_ix),
        st.tuples(st.just("earn"), order_ix, st.integers(0, 20000)),
        st.tuples(st.just("reverse"), order_ix),
    ),
    min_size=1,
    max_size=25,
)


@dataclass
class Model:
    """What the ledger should hold: per account (0 balance, 1 points) and per hold."""

    money: list[int] = field(default_factory=lambda: [0, 0])
    keys: set[str] = field(default_factory=set)
    holds: dict[tuple[int, int], list[Any]] = field(default_factory=dict)  # [amount, status]
    earned: dict[int, int] = field(default_factory=dict)
    reversed_: dict[int, int] = field(default_factory=dict)

    def held(self, which: int) -> int:
        return sum(a for (_, w), (a, st_) in self.holds.items() if w == which and st_ == "held")


async def _apply(db, step, run, user, orders, accounts, model: Model, now) -> None:
    kind = step[0]
    bal = accounts[0]
    async with db.transaction() as s:
        if kind == "topup":
            key = f"topup:{run}:{step[1]}"
            done = await credit(s, bal, step[2], reason="topup", key=key, now=now)
            assert done == (key not in model.keys)
            if done:
                model.keys.add(key)
                model.money[0] += step[2]
        elif kind == "spend":
            key = f"spend:{run}:{step[1]}"
            fits = model.money[0] >= step[2]
            try:
                done = await debit(s, bal, step[2], reason="adjust", key=key, now=now)
            except InsufficientFunds:
                assert key not in model.keys and not fits
            else:
                assert done == (key not in model.keys) and (fits or not done)
                if done:
                    model.keys.add(key)
                    model.money[0] -= step[2]
        elif kind == "hold":
            o = step[1]
            parts = [(w, a) for w, a in ((0, step[2]), (1, step[3])) if a is not None]
            new = [(w, a) for w, a in parts if (o, w) not in model.holds]
            fits = all(model.money[w] >= a for w, a in new)
            try:
                await hold(s, orders[o], [(accounts[w], a) for w, a in parts], now)
            except InsufficientFunds:
                assert not fits
            else:
                assert fits
                for w, a in new:
                    model.money[w] -= a
                    model.holds[(o, w)] = [a, "held"]
        elif kind in ("commit", "release", "return"):
            o = step[1]
            old, new_status, fn = {
                "commit": ("held", "committed", commit_holds),
                "release": ("held", "released", release_holds),
                "return": ("committed", "returned", return_holds),
            }[kind]
            moved = [w for (oo, w), h in model.holds.items() if oo == o and h[1] == old]
            assert await fn(s, orders[o], now) == len(moved)
            for w in moved:
                h = model.holds[(o, w)]
                h[1] = new_status
                if kind != "commit":  # given back exactly what was taken
                    model.money[w] += h[0]
        elif kind == "earn":
            o = step[1]
            got = await earn_points(s, orders[o], user, step[2], "CNY", RULES, now)
            due = points_earned(RULES, step[2], "CNY")
            if o in model.earned or due == 0:
                assert got == 0
            else:
                assert got == due
                model.earned[o] = due
                model.money[1] += due
        elif kind == "reverse":
            o = step[1]
            short = await reverse_points(s, orders[o], now)
            if o not in model.earned:
                assert short == 0
            elif o in model.reversed_:
                assert short == model.earned[o] - model.reversed_[o]
            else:
                take = min(model.earned[o], model.money[1])
                assert short == model.earned[o] - take
                model.reversed_[o] = take
                model.money[1] -= take


async def _check(db, user, accounts, model: Model) -> None:
    async with db.session() as s:
        for which, account_id in enumerate(accounts):
            cached = (
                await s.execute(
                    select(col(WalletAccount.balance)).where(WalletAccount.id == account_id)
                )
            ).scalar_one()
            assert cached == await recompute(s, account_id) == model.money[which] >= 0
        got = {h.kind: (h.amount, h.held) for h in await balances(s, user)}
    assert got == {
        BALANCE: (model.money[0], model.held(0)),
        POINTS: (model.money[1], model.held(1)),
    }


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=steps)
async def test_random_interleavings_keep_the_ledger_exact(db, now, plan):
    run = f"{next(_seq)}.{secrets.token_hex(3)}"  # keys of earlier examples stay in the db
    async with db.transaction() as s:
        user = (await get_or_create_user(s, "telegram", f"w{run}", now)).id
        accounts = (
            await account_for(s, user, BALANCE, "CNY", now),
            await account_for(s, user, POINTS, POINTS_CURRENCY, now),
        )
        orders = []
        for _ in range(ORDERS + 1):  # the last one earned the starting points
            order = Order(
                order_no=f"GPP{secrets.token_hex(5).upper()}",
                user_id=user,
                provider="wallet",
                amount_minor=0,
                currency="CNY",
                created_at=now,
            )
            s.add(order)
            await s.flush()
            orders.append(order.id)
    model = Model()
    # A starting balance and points, so that most holds and spends find something to take.
    for step in (("topup", 9, 2000), ("earn", ORDERS, 20000)):
        await _apply(db, step, run, user, orders, accounts, model, now)
    for step in plan:
        await _apply(db, step, run, user, orders, accounts, model, now)
        await _check(db, user, accounts, model)
