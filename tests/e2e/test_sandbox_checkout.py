"""Issue 6, end to end: the sandbox checkout page's Pay pressed twice (one after the other,
and two at once) records one charge, and the buyer gets in once."""

from __future__ import annotations

import asyncio

import aiohttp

from storage.models import Membership, Order, Payment
from tests.e2e.world import BUYER, OWNER, World


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


async def test_a_top_up_opens_and_pays_on_the_checkout_page(world: World):
    """A top-up order has no plan: the page names the top-up and the wallet, and Pay credits
    the balance once."""
    await world.set_up_shop("30d 4.99USD Monthly access")
    await world.ask(OWNER, "/addtopup 10USD 1USD", match=lambda m: "Top-up #" in (m.text or ""))
    wallet = await world.ask(BUYER, "/wallet", match=lambda m: bool(m.callback_data))
    methods = await world.press(BUYER, wallet, "tpu:", match=lambda m: bool(m.callback_data))
    pay = await world.press(
        BUYER, methods, "tpp:", match=lambda m: bool(m.button_urls), suffix=":sandbox"
    )
    url = pay.button_urls[0]
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as r:
            page = await r.text()
            assert r.status == 200, page
            assert "Top-up 10.00 USD (+1.00)" in page and "Your wallet balance" in page
        async with http.post(url) as r:
            page = await r.text()
            assert r.status == 200 and 'data-status="paid"' in page, page
            assert "The balance is in your wallet" in page
    await world.wait_text(BUYER, "Balance: 11.00 USD")
    (order,) = [o for o in await world.rows(Order) if o.kind == "topup"]
    assert order.status == "paid"
