"""A wallet choice made twice (billing/wallet_checkout.py, `chosen_at`): two checkouts of
the same choice at the same moment, in two sessions, open one order; the plan chosen anew
is bought again."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from billing.wallet_checkout import open_wallet_checkout
from membership.errors import RuleError
from storage.models import Order, Plan, User
from tests.unit.test_ledger_rules import rows
from tests.unit.test_wallet_checkout import (  # noqa: F401 (wallet_on: a fixture)
    PRICE,
    RULES,
    TIMEOUT,
    seed,
    shop_cny,
    wallet,
    wallet_on,
)

pytestmark = pytest.mark.usefixtures("wallet_on")


async def choose(db, shop, now, chosen_at) -> Order:
    async with db.session() as s:
        user = await s.get(User, shop.buyer.id)
        plan = await s.get(Plan, shop.plan.id)
        assert user is not None and plan is not None
        started = await open_wallet_checkout(
            s,
            user,
            plan,
            PRICE,
            None,
            use_balance=True,
            use_points=False,
            rules=RULES,
            now=now,
            public_url="https://gatepass.example",
            timeout=TIMEOUT,
            chosen_at=chosen_at,
        )
        return started.order


async def test_the_same_choice_twice_at_once_opens_one_order(db, now):
    shop = await shop_cny(db, now)
    await seed(db, shop.buyer, now, balance=5000)
    shown = now - timedelta(seconds=5)
    results = await asyncio.gather(
        *(choose(db, shop, now, shown) for _ in range(2)), return_exceptions=True
    )
    paid = [r for r in results if isinstance(r, Order)]
    refused = [r for r in results if isinstance(r, RuleError)]
    assert len(paid) == 1 and len(refused) == 1, results
    assert refused[0].key == "wallet_choice_used"
    assert refused[0].params == {"order_no": paid[0].order_no}
    assert len(await rows(db, Order)) == 1
    assert (await wallet(db, shop.buyer))["balance"] == 5000 - 990
    # Shown again after that order: a new choice, bought again.
    again = await choose(db, shop, now + timedelta(seconds=2), now + timedelta(seconds=1))
    assert again.status == "paid" and len(await rows(db, Order)) == 2
