"""The local WeChat Pay / Alipay hosts' sandbox phone page (sandbox/qr_phone.py), the
playground's and the demo's way to "scan and pay", in headless Chromium on a phone screen:
it lists the order the bot just sent a QR code for, Pay goes through the host's real payment
(its signed notification grants, the invite arrives in the chat), and an order the service
closed at its timeout is no longer listed and can no longer be paid."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest

from storage.models import Order
from tests.e2e.qr_rigs import RIGS, QrRig, qr_checkout, qr_world
from tests.e2e.test_pay_page import (  # the phone-sized browser fixtures
    HAS_CHROMIUM,
    browser,  # noqa: F401
    needs_chromium,
    page,  # noqa: F401
)
from tests.e2e.world import BUYER, World

if HAS_CHROMIUM:
    from playwright.async_api import Page, expect

pytestmark = needs_chromium


@pytest.fixture(params=list(RIGS))
def rig(request: pytest.FixtureRequest) -> QrRig:
    return RIGS[request.param]()


@pytest.fixture
async def world(db_url: tuple[str, str | None], rig: QrRig) -> AsyncIterator[World]:
    async with qr_world(db_url, rig) as w:
        yield w


async def the_order(world: World) -> Order:
    (order,) = await world.rows(Order)
    return order


async def test_the_phone_lists_the_order_and_pays_it(
    world: World,
    rig: QrRig,
    page: Page,  # noqa: F811 - the fixture imported above
) -> None:
    await qr_checkout(world, rig)
    order = await the_order(world)
    await page.goto(rig.phone_url)
    card = page.locator("form.order", has_text=order.order_no)
    await expect(card).to_contain_text("¥9.90")
    await card.get_by_role("button", name="Pay").click()
    await expect(page.locator("body")).to_contain_text(f"Paid {order.order_no}.")
    await expect(page.locator("form.order")).to_have_count(0)  # paid: nothing left to pay
    await page.screenshot(path=f"/tmp/sandbox-phone-{rig.name}.png")
    await world.invite_for(BUYER, timeout=15)
    assert (await the_order(world)).status == "paid"


async def test_a_closed_order_is_not_listed_and_cannot_be_paid(world: World, rig: QrRig) -> None:
    await qr_checkout(world, rig)
    order = await the_order(world)
    world.clock.advance(timedelta(minutes=61))
    await world.service.sweeps.run_sweeps_once(world.clock.now())  # closed at the provider
    assert (await the_order(world)).status == "expired"
    async with aiohttp.ClientSession() as http:
        async with http.get(rig.phone_url) as r:
            assert r.status == 200 and order.order_no not in await r.text()
        async with http.post(f"{rig.phone_url}/pay", data={"order_no": order.order_no}) as r:
            text = await r.text()
            assert r.status == 200 and "Not paid:" in text, text
    assert (await the_order(world)).status == "expired"
