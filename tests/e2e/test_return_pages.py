"""The pages a provider sends the buyer back to (Stripe's success_url and cancel_url), read in
a real browser (headless Debian Chromium) after a real purchase: they name the plan and the
group, say where the order stands in the buyer's language, update by themselves while the
payment is being confirmed, and fit a phone."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from storage.models import Order
from tests.e2e.test_buy_with_stripe import session_id
from tests.e2e.world import World

CHROMIUM = "/usr/bin/chromium"
PHONE = {"width": 390, "height": 844}

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium; "
    ".ci/run installs it)",
)

if Path(CHROMIUM).exists():
    from playwright.async_api import Page, async_playwright, expect

    expect.set_options(timeout=20_000)


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield await browser.new_page(viewport=PHONE)
        finally:
            await browser.close()


def _shots(tmp_path: Path) -> Path:
    path = Path(os.environ.get("GATEPASS_SCREENSHOTS") or tmp_path)
    path.mkdir(parents=True, exist_ok=True)
    return path


async def test_the_success_page_follows_the_order_from_confirming_to_paid(
    world: World, page: Page, tmp_path: Path
):
    await world.set_up_shop("30d 4.99USD Monthly access")
    sid = session_id(await world.checkout())
    (order,) = await world.rows(Order)
    await page.goto(f"{world.public_url}/paid/{order.order_no}")
    card = page.locator(".card")
    await expect(card).to_have_attribute("data-order-state", "pending")
    await expect(card).to_contain_text("Monthly access")
    await expect(card).to_contain_text("4.99 USD")
    await page.screenshot(path=str(_shots(tmp_path) / "return-pending.png"))
    assert await world.stripe.pay(sid) == 200
    # The page refreshes itself until the webhook has landed.
    await expect(card).to_have_attribute("data-order-state", "paid")
    await expect(card).to_contain_text("invite is waiting in your chat")
    await page.screenshot(path=str(_shots(tmp_path) / "return-paid.png"))
    # Nothing of it is wider than the phone.
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


async def test_the_cancel_page_speaks_the_buyers_language(world: World, page: Page, tmp_path: Path):
    await world.set_up_shop("30d 4.99USD Monthly access")
    await world.tg.create_user(5005, "Li", language_code="zh-hans")
    await world.checkout(buyer=5005)
    (order,) = await world.rows(Order)
    await page.goto(f"{world.public_url}/cancelled/{order.order_no}")
    card = page.locator(".card")
    await expect(card).to_have_attribute("data-order-state", "not_paid")
    await expect(card).to_contain_text("未付款")
    await expect(card).to_contain_text("Monthly access")
    await page.screenshot(path=str(_shots(tmp_path) / "return-cancelled-zh.png"))


async def test_an_unknown_order_is_a_404_page(world: World, page: Page):
    for no in ("GPNOSUCHORDER", "x" * 200, "%00", "'; drop table orders; --"):
        async with aiohttp.ClientSession() as http, http.get(f"{world.public_url}/paid/{no}") as r:
            assert r.status == 404, no
    response = await page.goto(f"{world.public_url}/cancelled/GPNOSUCHORDER")
    assert response is not None and response.status == 404
    await expect(page.locator(".card")).to_contain_text("no such order")
