"""The QR pay page /pay/<order_no> after a real QR checkout in the chat: over HTTP (404s,
headers, the PNG only while pending, the status JSON, GET only), and in headless Debian
Chromium on a phone screen: the QR code, amount and a live countdown in English and
Chinese, turning into "paid" without a reload once the payment lands (and with scripts
off, by its meta refresh), and "expired" with the code hidden. Every QR rig of
tests/e2e/qr_rigs.py."""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from billing.qr_image import qr_png
from storage.models import ChatGroup, Order, Plan
from tests.e2e.qr_rigs import RIGS, QrRig, qr_checkout, qr_world
from tests.e2e.world import BUYER, World

CHROMIUM = "/usr/bin/chromium"
PHONE = {"width": 390, "height": 844}
LI = 5005  # a buyer whose Telegram speaks Chinese
HAS_CHROMIUM = Path(CHROMIUM).exists()
needs_chromium = pytest.mark.skipif(
    not HAS_CHROMIUM,
    reason=f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium; "
    ".ci/run installs it)",
)

if HAS_CHROMIUM:
    from playwright.async_api import Browser, Page, async_playwright, expect

    expect.set_options(timeout=20_000)


@pytest.fixture(params=list(RIGS))
def rig(request: pytest.FixtureRequest) -> QrRig:
    return RIGS[request.param]()


@pytest.fixture
async def world(db_url: tuple[str, str | None], rig: QrRig) -> AsyncIterator[World]:
    async with qr_world(db_url, rig) as w:
        yield w


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=PHONE)
    try:
        yield await context.new_page()
    finally:
        await context.close()


def shots() -> Path:
    path = Path(os.environ.get("GATEPASS_SCREENSHOTS") or "/tmp")
    path.mkdir(parents=True, exist_ok=True)
    return path


async def get(url: str) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        return r.status, dict(r.headers), await r.read()


async def the_order(world: World) -> Order:
    (order,) = await world.rows(Order)
    return order


async def test_pay_page_over_http(world: World, rig: QrRig) -> None:
    base = world.public_url
    # Not an order of ours, or not the shape of one: 404 everywhere, nothing asked of the DB
    # for a malformed one.
    for no in ("GPAAAAAAAAAA", "x" * 200, "%00", "GP0000000000", "gpabcdefghjk"):
        for tail in ("", "/qr.png", "/status"):
            status, headers, _ = await get(f"{base}/pay/{no}{tail}")
            assert status == 404, (no, tail)
    status, _, body = await get(f"{base}/pay/GPAAAAAAAAAA")
    assert b"There is no such order" in body
    # No buyer to take the language from: the browser's, by its weights; ?lang= wins.
    async with aiohttp.ClientSession() as http:
        for accept, want in (
            ("zh-CN,zh;q=0.9,en;q=0.8", "找不到订单"),
            ("fr-FR,zh;q=0.5,en;q=0.3", "找不到订单"),
            ("en-US,zh;q=0.8", "Order not found"),
            ("zh;q=bogus,,;q=", "Order not found"),
        ):
            async with http.get(
                f"{base}/pay/GPAAAAAAAAAA", headers={"Accept-Language": accept}
            ) as r:
                assert r.status == 404 and want in await r.text(), accept
        async with http.get(
            f"{base}/pay/GPAAAAAAAAAA?lang=en", headers={"Accept-Language": "zh-CN"}
        ) as r:
            assert "Order not found" in await r.text()
    # An order paid by card has no pay page.
    await world.checkout(provider="sandbox", currency="CNY")
    (card,) = await world.rows(Order)
    assert (await get(f"{base}/pay/{card.order_no}"))[0] == 404

    await qr_checkout(world, rig)
    order = next(o for o in await world.rows(Order) if o.provider == rig.name)
    assert order.checkout_url
    status, headers, body = await get(f"{base}/pay/{order.order_no}")
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert b"9.90 CNY" in body and order.order_no.encode() in body
    status, headers, png = await get(f"{base}/pay/{order.order_no}/qr.png")
    assert (status, headers["Content-Type"]) == (200, "image/png")
    assert png == qr_png(order.checkout_url) and headers["Cache-Control"] == "no-store"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/pay/{order.order_no}/status") as r:
            st = await r.json()
            assert r.headers["Cache-Control"] == "no-store"
        assert st["state"] == "pending" and 3500 < st["seconds_left"] <= 3600
        # GET only: the page has no way to change anything.
        async with http.post(f"{base}/pay/{order.order_no}/status") as r:
            assert r.status == 405

    await rig.pay(world, order.order_no)
    # Paid at the provider but not known to us yet: the page says what we know.
    assert json.loads((await get(f"{base}/pay/{order.order_no}/status"))[2])["state"] == "pending"
    await rig.notify(world, order.order_no)
    status, _, body = await get(f"{base}/pay/{order.order_no}/status")
    assert json.loads(body) == {"state": "paid", "seconds_left": 0, "final": True}
    # The code of a paid order is not served any more.
    assert (await get(f"{base}/pay/{order.order_no}/qr.png"))[0] == 410


async def _countdown_seconds(page: Page) -> int:
    text = await page.locator("#countdown").inner_text()
    minutes, seconds = text.split(":")
    return int(minutes) * 60 + int(seconds)


async def _ticked_below(page: Page, seconds: int) -> bool:
    return await _countdown_seconds(page) < seconds


@needs_chromium
async def test_pay_page_on_a_phone_turns_paid_without_a_reload(
    world: World, rig: QrRig, page: Page
) -> None:
    await qr_checkout(world, rig)
    order = await the_order(world)
    await page.goto(f"{world.public_url}/pay/{order.order_no}")
    card = page.locator(".card")
    await expect(card).to_have_attribute("data-order-state", "pending")
    qr = page.locator("img.qr")
    await expect(qr).to_be_visible()
    assert await qr.evaluate("i => i.complete && i.naturalWidth") >= 300
    box = await qr.bounding_box()
    assert box is not None and 200 <= box["width"] <= PHONE["width"]
    await expect(card).to_contain_text("9.90 CNY")
    await expect(card).to_contain_text(f"Scan the QR code with {rig.app_en} to pay")
    await expect(card).to_contain_text("Monthly access")
    await expect(card).to_contain_text(order.order_no)
    await expect(page.locator("#countdown")).to_have_text(re.compile(r"^\d\d:\d\d$"))
    first = await _countdown_seconds(page)
    assert 3500 < first <= 3600
    await world.eventually(lambda: _ticked_below(page, first), timeout=5)  # it runs
    await page.screenshot(path=str(shots() / f"paypage-{rig.name}-pending-en.png"), full_page=True)
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    await page.evaluate("window.stillTheSamePage = true")
    await rig.pay(world, order.order_no)
    await rig.notify(world, order.order_no)
    await expect(card).to_have_attribute("data-order-state", "paid")
    await expect(card).to_contain_text("Payment received — your invite is in the chat.")
    await expect(qr).to_be_hidden()
    assert await page.evaluate("window.stillTheSamePage === true")  # polled, not reloaded
    await page.screenshot(path=str(shots() / f"paypage-{rig.name}-paid-en.png"), full_page=True)
    await world.invite_for(BUYER, timeout=15)


@needs_chromium
async def test_pay_page_in_chinese_and_expired(world: World, rig: QrRig, page: Page) -> None:
    await world.tg.create_user(LI, "Li", language_code="zh-hans")
    await world.tg.send_text(LI, "/help")
    await qr_checkout(world, rig, buyer=LI)
    order = await the_order(world)
    await page.goto(f"{world.public_url}/pay/{order.order_no}")
    card = page.locator(".card")
    await expect(card).to_have_attribute("data-order-state", "pending")
    await expect(card).to_contain_text(f"使用{rig.app_zh}付款")
    await expect(card).to_contain_text("剩余时间")
    await expect(card).to_contain_text("9.90 CNY")
    await expect(page.locator("img.qr")).to_be_visible()
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await page.screenshot(path=str(shots() / f"paypage-{rig.name}-pending-zh.png"), full_page=True)
    # ?lang= shows it in English to someone else.
    await page.goto(f"{world.public_url}/pay/{order.order_no}?lang=en")
    await expect(card).to_contain_text(f"Pay with {rig.app_en}")

    # The order times out and is closed: the open page says expired and hides the code.
    await page.goto(f"{world.public_url}/pay/{order.order_no}")
    world.clock.advance(timedelta(minutes=61))
    await world.service.sweeps.run_sweeps_once(world.clock.now())
    await expect(card).to_have_attribute("data-order-state", "expired")
    await expect(card).to_contain_text("已过期")
    await expect(page.locator("img.qr")).to_be_hidden()
    await page.screenshot(path=str(shots() / f"paypage-{rig.name}-expired-zh.png"), full_page=True)
    assert (await get(f"{world.public_url}/pay/{order.order_no}/qr.png"))[0] == 410


@needs_chromium
async def test_a_code_paid_in_its_last_seconds_turns_the_expired_page_paid(
    world: World, rig: QrRig, page: Page
) -> None:
    """The buyer pays just before the code times out; the provider's notification reaches
    us after it. The page said "expired" meanwhile; it must not stop there (the payment is
    honoured and the invite comes), but turn "paid" when the payment lands."""
    await qr_checkout(world, rig)
    order = await the_order(world)
    base = f"{world.public_url}/pay/{order.order_no}"
    await page.goto(base)
    card = page.locator(".card")
    await expect(card).to_have_attribute("data-order-state", "pending")
    await rig.pay(world, order.order_no)  # in time at the provider; no notification yet
    world.clock.advance(timedelta(minutes=60, seconds=5))
    await expect(card).to_have_attribute("data-order-state", "expired")
    st = json.loads((await get(f"{base}/status"))[2])
    assert st == {"state": "expired", "seconds_left": 0, "final": False}
    await rig.notify(world, order.order_no)  # late, and honoured
    await world.invite_for(BUYER, timeout=15)
    await expect(card).to_have_attribute("data-order-state", "paid")
    await expect(card).to_contain_text("Payment received — your invite is in the chat.")
    # Long past its time and still unpaid, an order's page is final: nothing polls it.
    other = await qr_checkout(world, rig)
    assert other.kind == "photo"
    newest = max(await world.rows(Order), key=lambda o: o.id or 0)
    world.clock.advance(timedelta(minutes=71))
    st = json.loads((await get(f"{world.public_url}/pay/{newest.order_no}/status"))[2])
    assert st == {"state": "expired", "seconds_left": 0, "final": True}


@needs_chromium
async def test_a_refunded_or_failed_order_says_closed_not_expired(
    world: World, rig: QrRig, page: Page
) -> None:
    """A buyer may have paid for a refunded order, or for one whose payment it could not
    take (a wrong amount, a dispute: `failed`): its page must not say "expired, send /start
    to buy again", inviting a second payment."""
    await qr_checkout(world, rig)
    order = await the_order(world)
    base = f"{world.public_url}/pay/{order.order_no}"
    await page.goto(base)
    card = page.locator(".card")
    await expect(card).to_have_attribute("data-order-state", "pending")
    await expect(page.locator(".v-pending")).to_be_visible()
    for status in ("failed", "refunded"):
        async with world.db.transaction() as s:  # what the ledger did (the page only reads)
            (await s.get(Order, order.id)).status = status
        st = json.loads((await get(f"{base}/status"))[2])
        assert st == {"state": "closed", "seconds_left": 0, "final": True}, status
        assert (await get(f"{base}/qr.png"))[0] == 410
        await page.goto(base)
        await expect(card).to_have_attribute("data-order-state", "closed")
        await expect(page.locator(".v-closed")).to_be_visible()
        await expect(page.locator(".v-closed")).to_contain_text("This order is closed")
        for other in (".v-pending", ".v-paid", ".v-expired"):
            await expect(page.locator(other)).to_be_hidden()
        await expect(page.locator("img.qr")).to_have_count(0)
    await page.screenshot(path=str(shots() / f"paypage-{rig.name}-closed-en.png"), full_page=True)
    # An order that timed out unpaid still says expired.
    async with world.db.transaction() as s:
        (await s.get(Order, order.id)).status = "expired"
    await page.goto(base)
    await expect(card).to_have_attribute("data-order-state", "expired")
    await expect(page.locator(".v-expired")).to_be_visible()
    await expect(page.locator(".v-closed")).to_be_hidden()


@needs_chromium
async def test_owner_controlled_titles_cannot_script_the_page(
    world: World, rig: QrRig, page: Page
) -> None:
    """Owners name plans and groups: their titles show on the buyer's page as text, and the
    page's only script is its own (a fresh nonce per response)."""
    await qr_checkout(world, rig)
    order = await the_order(world)
    evil_plan = '</script><script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
    evil_group = '"><svg onload="window.pwned=3">{nonce}'
    async with world.db.transaction() as s:
        (await s.get(Plan, order.plan_id)).title = evil_plan
        for group in (await s.execute(select(ChatGroup))).scalars():
            group.title = evil_group
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    base = f"{world.public_url}/pay/{order.order_no}"
    await page.goto(base)
    card = page.locator(".card")
    await expect(card).to_have_attribute("data-order-state", "pending")
    await expect(page.locator("dd").first).to_have_text(evil_plan)
    await expect(page.locator("dd").nth(1)).to_have_text(evil_group)
    assert await page.evaluate("window.pwned === undefined") and dialogs == []
    assert await page.locator("script").count() == 1
    _, h1, _ = await get(base)
    _, h2, _ = await get(base)
    n1 = re.search(r"'nonce-([^']+)'", h1["Content-Security-Policy"])
    n2 = re.search(r"'nonce-([^']+)'", h2["Content-Security-Policy"])
    assert n1 and n2 and n1.group(1) != n2.group(1)
    assert "default-src 'none'" in h1["Content-Security-Policy"]


@needs_chromium
async def test_pay_page_without_scripts_refreshes_itself(
    world: World, rig: QrRig, browser: Browser
) -> None:
    context = await browser.new_context(viewport=PHONE, java_script_enabled=False)
    try:
        page = await context.new_page()
        await qr_checkout(world, rig)
        order = await the_order(world)
        await page.goto(f"{world.public_url}/pay/{order.order_no}")
        card = page.locator(".card")
        await expect(card).to_have_attribute("data-order-state", "pending")
        await expect(page.locator("#countdown")).to_contain_text(":")
        await rig.pay(world, order.order_no)
        await rig.notify(world, order.order_no)
        await expect(card).to_have_attribute("data-order-state", "paid")
        # Paid in its last seconds, the notification late: the expired page reloads on
        # until the payment shows, as the scripted page polls.
        await qr_checkout(world, rig)
        late = max(await world.rows(Order), key=lambda o: o.id or 0)
        await page.goto(f"{world.public_url}/pay/{late.order_no}")
        await expect(card).to_have_attribute("data-order-state", "pending")
        await rig.pay(world, late.order_no)
        world.clock.advance(timedelta(minutes=60, seconds=5))
        await expect(card).to_have_attribute("data-order-state", "expired")
        await rig.notify(world, late.order_no)
        await expect(card).to_have_attribute("data-order-state", "paid")
    finally:
        await context.close()
