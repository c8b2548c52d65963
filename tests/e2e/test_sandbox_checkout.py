"""Issue 6, end to end: the sandbox checkout page's Pay pressed twice (one after the other,
and two at once) records one charge, and the buyer gets in once."""

from __future__ import annotations

import asyncio

import aiohttp

from storage.models import Membership, Order, Payment
from tests.e2e.world import BUYER, World


async def test_pay_pressed_twice_records_one_charge(world: World):
    await world.set_up_shop()
    url = await world.checkout(provider="sandbox")
    async with aiohttp.ClientSession() as http:

        async def press() -> tuple[int, str]:
            async with http.post(url) as r:
                return r.status, await r.text()

        first, second = await asyncio.gather(press(), press())  # a double click
        assert first[0] == second[0] == 200
        assert "Paid" in first[1] or "Already paid" in first[1]
        third = await press()  # pressed again later (back button, reload)
        assert third[0] == 200 and "Already paid" in third[1]
    await world.invite_for(BUYER)
    payments = await world.rows(Payment)
    assert [(p.kind, p.amount_minor, p.currency) for p in payments] == [("charge", 499, "USD")]
    (order,) = await world.rows(Order)
    assert order.status == "paid"
    assert len(await world.rows(Membership)) == 1
