"""Issue 7: the playground page and the sandbox checkout page, played in a real browser.

Headless Debian Chromium (/usr/bin/chromium) driven by Playwright's Python client against
`gatepass.playground.playground()`: the same wiring `gatepass playground` runs. Everything
happens through the page, as a person would do it: owner setup, a purchase paid on the
sandbox checkout page, a join request approved, a stranger declined, the clock moved forward
to a reminder and a removal. Screenshots at a phone width (390x844) and a desktop width go to
$GATEPASS_SCREENSHOTS (or the test's temporary directory).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr
from sqlalchemy import select

from bot.i18n import t
from gatepass.demo import GROUP, GROUP_TITLE
from gatepass.playground import Playground, playground
from sandbox.checkout_page import add_routes as add_checkout_routes
from storage.models import Order, Payment
from tests.conftest import free_port

CHROMIUM = "/usr/bin/chromium"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium; "
    ".ci/run installs it)",
)

if Path(CHROMIUM).exists():
    from playwright.async_api import Browser, Page, async_playwright, expect

    expect.set_options(timeout=20_000)  # two shared CPU cores: be patient, never sleep


@pytest.fixture
async def pg() -> AsyncIterator[Playground]:
    async with playground() as p:
        yield p


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        # --no-sandbox: CI runs as root, where Chromium's own sandbox cannot start.
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    path = Path(os.environ.get("GATEPASS_SCREENSHOTS") or tmp_path)
    path.mkdir(parents=True, exist_ok=True)
    return path


class Screen:
    """The playground page as one person uses it (a phone shows one pane at a time)."""

    def __init__(self, page: Page, shots: Path, prefix: str) -> None:
        self.page, self.shots, self.prefix = page, shots, prefix

    async def shot(self, name: str, page: Page | None = None) -> None:
        await (page or self.page).screenshot(path=str(self.shots / f"{self.prefix}-{name}.png"))

    async def be(self, name: str) -> None:
        await self.to_list()
        await self.page.select_option("#who", label=name)
        await expect(self.page.locator("#who-about")).not_to_be_empty()

    async def to_list(self) -> None:
        back = self.page.locator("#back")
        if await back.is_visible():
            await back.click()

    async def open(self, title: str) -> None:
        await self.to_list()
        await self.page.locator("#chats .chat-item", has_text=title).click()
        await expect(self.page.locator("#conv-title")).to_have_text(title)

    async def say(self, text: str) -> None:
        await self.page.fill("#text", text)
        await self.page.press("#text", "Enter")
        await expect(self.page.locator("#messages .msg.mine").last).to_contain_text(text)

    def bot_says(self, needle: str | re.Pattern[str]) -> Any:
        return self.page.locator("#messages .msg:not(.mine)", has_text=needle).last

    async def press(self, data_prefix: str, data_suffix: str = "") -> None:
        """Press the newest message's button whose callback data starts (and ends) so."""
        ends = f'[data-callback$="{data_suffix}"]' if data_suffix else ""
        buttons = self.page.locator(
            f'#messages .msg:last-child .kb button[data-callback^="{data_prefix}"]{ends}'
        )
        await expect(buttons.first).to_be_visible()
        await buttons.first.click()


async def owner_sets_up(s: Screen) -> None:
    await s.be("Olga")
    await s.open(GROUP_TITLE)
    await s.say("/setup")
    setup = s.bot_says("group #")
    await expect(setup).to_be_visible()
    group_no = re.search(r"group #(\d+)", await setup.inner_text())
    assert group_no is not None
    await s.open("Gatepass")
    await s.say(f"/addplan {group_no.group(1)} 30d 4.99USD 9.90CNY Monthly access")
    await expect(s.bot_says("Plan #")).to_be_visible()


async def buyer_orders(s: Screen, buyer: str, currency: str) -> Any:
    """The buyer picks the group, the plan and the sandbox in `currency`: the Pay button."""
    await s.be(buyer)
    await s.open("Gatepass")
    await s.say("/start")
    await s.press("grp:")
    await s.press("pln:")
    await s.press("pay:", f":sandbox:{currency}")
    pay_link = s.page.locator('#messages .kb a[data-url*="/sandbox/pay/"]').last
    await expect(pay_link).to_be_visible()
    return pay_link


async def buyer_pays(s: Screen, buyer: str, shot_prefix: str | None = None) -> str:
    """The buyer buys through the bot and the sandbox checkout; returns the invite link."""
    pay_link = await buyer_orders(s, buyer, "USD")
    async with s.page.expect_popup() as popup_info:
        await pay_link.click()
    checkout = await popup_info.value
    await checkout.wait_for_load_state()
    await expect(checkout.locator("body")).to_have_attribute("data-status", "open")
    if shot_prefix:
        await s.shot(f"{shot_prefix}-checkout", checkout)
    await checkout.locator("button.pay").click()
    await expect(checkout.locator("body")).to_have_attribute("data-status", "paid")
    if shot_prefix:
        await s.shot(f"{shot_prefix}-paid", checkout)
    await checkout.close()
    invite = s.page.locator('#messages .kb a[data-url^="https://t.me/+"]').last
    await expect(invite).to_be_visible()
    link = await invite.get_attribute("data-url")
    assert link
    return link


async def open_invite(s: Screen, via_button: bool, link: str) -> None:
    if via_button:
        await s.page.locator(f'#messages .kb a[data-url="{link}"]').last.click()
    else:
        await s.to_list()
        await s.page.click("#open-link")
        await s.page.fill("#link-url", link)
        await s.page.click("#link-ok")
    dialog = s.page.locator("#invite-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator("#invite-title")).to_have_text(GROUP_TITLE)
    await expect(dialog.locator("#invite-ok")).to_have_text("Request to join")
    await s.shot("invite-dialog")
    await dialog.locator("#invite-ok").click()


async def test_owner_setup_purchase_and_declined_stranger_on_a_phone(
    pg: Playground, browser: Browser, shots: Path
) -> None:
    page = await browser.new_page(viewport=PHONE)
    s = Screen(page, shots, "phone")
    await page.goto(pg.url)
    await expect(page.locator("#chats .chat-item")).to_have_count(2)  # bot chat, her group
    await s.shot("chats")

    await owner_sets_up(s)
    await s.shot("owner-addplan")

    link = await buyer_pays(s, "Bob", shot_prefix="phone")
    await s.shot("buyer-invite")
    await open_invite(s, True, link)
    # The bot approves Bob's request: his chat list gains the group, where the page shows it.
    member = page.locator(f'#chats .chat-item[data-chat-id="{GROUP}"][data-status="member"]')
    await s.to_list()
    await expect(member).to_be_visible()
    await s.open(GROUP_TITLE)
    await expect(
        page.locator("#messages .service", has_text="Bob joined the group")
    ).to_be_visible()
    await s.shot("buyer-in-group")
    assert await pg.stack.tg.member_status(GROUP, 202) == "member"

    # Bob forwards his link; Sam opens it, asks to join, and is turned away.
    await s.be("Sam")
    await open_invite(s, False, link)
    await s.open("Gatepass")
    await expect(s.bot_says("declined")).to_be_visible()
    await s.shot("stranger-declined")
    await s.to_list()
    await expect(page.locator(f'#chats .chat-item[data-chat-id="{GROUP}"]')).to_have_count(0)
    assert await pg.stack.tg.member_status(GROUP, 303) == "left"
    assert await pg.stack.tg.join_requests(GROUP) == []


async def test_a_new_chinese_buyer_and_the_clock_on_a_desktop(
    pg: Playground, browser: Browser, shots: Path
) -> None:
    page = await browser.new_page(viewport=DESKTOP)
    s = Screen(page, shots, "desktop")
    await page.goto(pg.url)
    await owner_sets_up(s)
    await s.shot("owner")

    # A user added in the page, whose Telegram speaks Chinese: the checkout follows.
    await page.click("#add-user")
    await page.fill("#user-name", "Chen")
    await page.select_option("#user-lang", "zh-hans")
    await page.click("#user-ok")
    await expect(page.locator("#who option:checked")).to_have_text("Chen")
    pay_link = await buyer_orders(s, "Chen", "CNY")
    pay_url = str(await pay_link.get_attribute("data-url"))
    phone = await browser.new_page(viewport=PHONE)
    other_tab = await browser.new_page(viewport=PHONE)
    await phone.goto(pay_url)
    await other_tab.goto(pay_url)
    await expect(phone.locator("html")).to_have_attribute("lang", "zh-Hans")
    await expect(phone.locator(".banner")).to_contain_text("测试支付")
    await expect(phone.locator(".card")).to_contain_text("Monthly access")
    await expect(phone.locator(".card")).to_contain_text(GROUP_TITLE)
    await expect(phone.locator("button.pay")).to_contain_text("支付")
    await s.shot("zh-checkout", phone)
    await phone.locator("button.pay").click()
    await expect(phone.locator("body")).to_have_attribute("data-status", "paid")
    await expect(phone.locator(".result")).to_contain_text("支付成功")
    await s.shot("zh-paid", phone)
    # Pay again in a second tab opened before: the same payment, recorded once.
    await other_tab.locator("button.pay").click()
    await expect(other_tab.locator("body")).to_have_attribute("data-status", "already_paid")
    await expect(other_tab.locator(".result")).to_contain_text("已经支付")
    await phone.reload()
    await expect(phone.locator("body")).to_have_attribute("data-status", "already_paid")
    await phone.close()
    await other_tab.close()
    async with pg.stack.service.db.session() as session:
        charges = (await session.execute(select(Payment))).scalars().all()
    assert [(p.kind, p.currency) for p in charges] == [("charge", "CNY")]

    invite = page.locator('#messages .kb a[data-url^="https://t.me/+"]').last
    await expect(invite).to_be_visible()
    await invite.click()
    await expect(page.locator("#invite-ok")).to_be_visible()
    await page.click("#invite-ok")
    await expect(
        page.locator(f'#chats .chat-item[data-chat-id="{GROUP}"][data-status="member"]')
    ).to_be_visible()
    await s.shot("buyer")

    # 28 days on: the reminder comes (the plan runs 30 days; reminders 3 days before).
    for _ in range(4):
        await page.click('[data-advance-days="7"]')
        await expect(page.locator("#clock-result")).to_contain_text("Moved 7 days")
    await expect(page.locator("#clock-result")).to_contain_text("reminders sent: 1")
    await expect(s.bot_says("续费")).to_be_visible()  # Chen reads Chinese
    await s.shot("reminder")
    # 30 more days: past the end and the grace period, Chen is removed from the group.
    await page.click('[data-advance-days="30"]')
    await expect(page.locator("#clock-result")).to_contain_text("members removed: 1")
    await expect(page.locator(f'#chats .chat-item[data-chat-id="{GROUP}"]')).to_have_count(0)
    await s.be("Olga")
    await s.open(GROUP_TITLE)
    await expect(page.locator("#messages .service", has_text="removed Chen")).to_be_visible()
    await s.shot("removal")


async def test_checkout_says_so_when_the_payment_is_not_confirmed(
    pg: Playground, browser: Browser, shots: Path
) -> None:
    """The refused path: the notification is refused (here: signed with a wrong secret, so
    our webhook answers 400). The page says so in the buyer's words and offers Pay again;
    nothing is recorded, and the real Pay then goes through."""
    page = await browser.new_page(viewport=DESKTOP)
    s = Screen(page, shots, "failed")
    await page.goto(pg.url)
    await owner_sets_up(s)
    pay_url = str(await (await buyer_orders(s, "Bob", "USD")).get_attribute("data-url"))

    settings = pg.stack.service.settings
    wrong = settings.model_copy(
        update={
            "sandbox_pay": settings.sandbox_pay.model_copy(
                update={"webhook_secret": SecretStr("not-the-secret")}
            )
        }
    )
    app = web.Application()
    add_checkout_routes(app, SimpleNamespace(db=pg.stack.service.db, settings=wrong))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        phone = await browser.new_page(viewport=PHONE)
        path = pay_url.split("/sandbox/pay/", 1)[1]
        await phone.goto(f"http://127.0.0.1:{port}/sandbox/pay/{path}")
        await phone.locator("button.pay").click()
        await expect(phone.locator("body")).to_have_attribute("data-status", "failed")
        await expect(phone.locator(".result")).to_contain_text("HTTP 400")
        await expect(phone.locator("button.pay")).to_be_visible()  # press Pay again
        await expect(phone.locator(".banner")).to_contain_text("TEST PAYMENT")
        await s.shot("checkout", phone)
    finally:
        await runner.cleanup()
    async with pg.stack.service.db.session() as session:
        assert (await session.execute(select(Payment))).scalars().all() == []
    await phone.goto(pay_url)
    await phone.locator("button.pay").click()
    await expect(phone.locator("body")).to_have_attribute("data-status", "paid")
    await expect(s.page.locator('#messages .kb a[data-url^="https://t.me/+"]')).to_be_visible()


# -- Telegram Stars --------------------------------------------------------------------------


async def owner_adds(s: Screen, command: str) -> None:
    """Olga registers her group and adds a plan with `command` (/addplan or /addsub)."""
    await s.be("Olga")
    await s.open(GROUP_TITLE)
    await s.say("/setup")
    setup = s.bot_says("group #")
    await expect(setup).to_be_visible()
    group_no = re.search(r"group #(\d+)", await setup.inner_text())
    assert group_no is not None
    await s.open("Gatepass")
    await s.say(f"/{command} {group_no.group(1)} 30d 250XTR Stars monthly")
    await expect(s.bot_says("Plan #")).to_be_visible()


async def buyer_picks_stars(s: Screen, buyer: str) -> None:
    await s.be(buyer)
    await s.open("Gatepass")
    await s.say("/start")
    await s.press("grp:")
    await s.press("pln:")
    await s.press("pay:", ":stars:XTR")


async def joins_with_the_invite(s: Screen, pg: Playground, user_id: int) -> None:
    invite = s.page.locator('#messages .kb a[data-url^="https://t.me/+"]').last
    await expect(invite).to_be_visible()
    await invite.click()
    await expect(s.page.locator("#invite-ok")).to_have_text("Request to join")
    await s.page.click("#invite-ok")
    await s.to_list()
    await expect(
        s.page.locator(f'#chats .chat-item[data-chat-id="{GROUP}"][data-status="member"]')
    ).to_be_visible()
    assert await pg.stack.tg.member_status(GROUP, user_id) == "member"


async def stars_charges(pg: Playground) -> list[tuple[str, int, str]]:
    async with pg.stack.service.db.session() as session:
        rows = (await session.execute(select(Payment))).scalars().all()
    return [(p.kind, p.amount_minor, p.currency) for p in rows]


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
async def test_a_stars_invoice_is_a_card_paid_with_its_pay_button(
    pg: Playground, browser: Browser, shots: Path, viewport: str
) -> None:
    page = await browser.new_page(viewport=PHONE if viewport == "phone" else DESKTOP)
    s = Screen(page, shots, f"stars-{viewport}")
    await page.goto(pg.url)
    await owner_adds(s, "addplan")
    await buyer_picks_stars(s, "Bob")

    card = page.locator("#messages .msg.invoice").last
    await expect(card.locator(".invoice-title")).to_have_text("Stars monthly")
    await expect(card.locator(".invoice-price")).to_contain_text("250 ⭐")
    await expect(card.locator(".invoice-price")).to_contain_text("Telegram Stars")
    pay = card.locator("button.pay-button")
    await expect(pay).to_have_text("Pay 250 ⭐")
    await expect(s.bot_says("Pay the invoice above with Telegram Stars")).to_be_visible()
    await s.shot("invoice")
    await pay.click()

    # pre_checkout_query, the bot's yes, successful_payment: paid, and the invite follows.
    await expect(page.locator("#toast")).to_have_text("Paid 250 ⭐.")
    await expect(card.locator("button.pay-button")).to_have_text("Paid ✓")
    await expect(card.locator("button.pay-button")).to_be_disabled()
    await expect(card.locator(".pay-outcome")).to_have_count(0)  # only refusals stay on it
    await expect(page.locator("#messages .service", has_text="Bob paid 250 ⭐")).to_be_visible()
    await expect(page.locator('#messages .kb a[data-url^="https://t.me/+"]')).to_be_visible()
    await s.shot("paid")
    await joins_with_the_invite(s, pg, 202)
    assert await stars_charges(pg) == [("charge", 250, "XTR")]


async def test_a_stars_subscription_link_button_opens_the_payment_sheet_and_pays(
    pg: Playground, browser: Browser, shots: Path
) -> None:
    page = await browser.new_page(viewport=PHONE)
    s = Screen(page, shots, "stars-link")
    await page.goto(pg.url)
    await owner_adds(s, "addsub")
    await buyer_picks_stars(s, "Bob")

    link = page.locator('#messages .kb a[data-url^="https://t.me/$"]').last
    await expect(link).to_be_visible()
    await link.click()
    sheet = page.locator("#pay-dialog")
    await expect(sheet).to_be_visible()
    await expect(sheet.locator("#pay-title")).to_have_text("Stars monthly")
    await expect(sheet.locator("#pay-price")).to_have_text("250 ⭐ every 30 days")
    await expect(sheet.locator("#pay-ok")).to_have_text("Subscribe for 250 ⭐")
    await s.shot("sheet")
    await sheet.locator("#pay-ok").click()
    await expect(sheet.locator("#pay-result")).to_have_text("Paid 250 ⭐.")
    await expect(sheet.locator("#pay-ok")).to_be_hidden()
    await s.shot("sheet-paid")
    await sheet.locator("#pay-cancel").click()
    await expect(sheet).to_be_hidden()
    (sub,) = await pg.stack.tg.star_subscriptions()
    assert (sub["user_id"], sub["total_amount"], sub["ended"]) == (202, 250, False)
    await joins_with_the_invite(s, pg, 202)
    assert await stars_charges(pg) == [("charge", 250, "XTR")]


async def test_a_stars_invoice_left_until_its_order_expired_is_refused_in_view(
    pg: Playground, browser: Browser, shots: Path
) -> None:
    """Bob leaves the invoice for a day: the order times out (the clock control runs the
    sweeps), so the bot's pre-checkout answer refuses the payment. The page shows the bot's
    reason on the card; nothing is charged, and Bob is not let in."""
    page = await browser.new_page(viewport=PHONE)
    s = Screen(page, shots, "stars-refused")
    await page.goto(pg.url)
    await owner_adds(s, "addplan")
    await buyer_picks_stars(s, "Bob")
    card = page.locator("#messages .msg.invoice").last
    await expect(card.locator("button.pay-button")).to_have_text("Pay 250 ⭐")

    await s.to_list()
    await page.click('[data-advance-days="1"]')
    await expect(page.locator("#clock-result")).to_contain_text("Moved 1 day")
    async with pg.stack.service.db.session() as session:
        (order,) = (await session.execute(select(Order))).scalars().all()
    assert order.status == "expired"

    await s.open("Gatepass")
    await card.locator("button.pay-button").click()
    refusal = card.locator(".pay-outcome.refused")
    await expect(refusal).to_have_text(
        f"Payment refused by the bot: {t('stars_order_not_pending', 'en')}"
    )
    await expect(page.locator("#toast.alert")).to_contain_text("can no longer be paid")
    await expect(card.locator("button.pay-button")).to_have_text("Pay 250 ⭐")  # not paid
    await s.shot("refused")
    assert await stars_charges(pg) == []
    assert await pg.stack.tg.member_status(GROUP, 202) == "left"


async def test_a_wechat_pay_qr_is_paid_on_the_sandbox_phone_the_page_links_to(
    pg: Playground, browser: Browser, shots: Path
) -> None:
    """A CNY price paid with WeChat Pay: the QR code shows in the chat as a photo; the page's
    "WeChat Pay sandbox phone" link opens the local host's phone, whose Pay does what scanning
    and paying would; the invite arrives in the chat."""
    page = await browser.new_page(viewport=DESKTOP)
    await page.goto(pg.url)
    s = Screen(page, shots, "wechatpay")
    await owner_sets_up(s)
    await s.be("Bob")
    await s.open("Gatepass")
    await s.say("/start")
    await s.press("grp:")
    await s.press("pln:")
    await s.press("pay:", ":wechatpay:CNY")
    qr = page.locator("#messages .msg:not(.mine) img.photo").last
    await expect(qr).to_be_visible()
    order_no = re.search(r"GP[A-Z0-9]{10}", await s.bot_says("WeChat").inner_text())
    assert order_no is not None
    await s.shot("qr")
    link = page.locator("#side-links a", has_text="WeChat Pay sandbox phone")
    await expect(link).to_have_attribute("href", pg.phones["WeChat Pay"])
    async with page.context.expect_page() as opened:
        await link.click()
    phone = await opened.value
    await (
        phone.locator("form.order", has_text=order_no.group(0))
        .get_by_role("button", name="Pay")
        .click()
    )
    await expect(phone.locator("body")).to_contain_text(f"Paid {order_no.group(0)}.")
    await s.shot("phone", phone)
    await expect(page.locator('#messages .kb a[data-url*="t.me/+"]').last).to_be_visible()
    await s.shot("invite")
