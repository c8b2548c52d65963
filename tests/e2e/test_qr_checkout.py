"""The buyer's side of a QR-code payment (WeChat Pay / Alipay) over the Bot API emulator:
the QR code as a photo with its caption and buttons, "I have paid" before and after paying
(a payment the provider never notified us of is granted by the button, once), the
notification that comes afterwards changing nothing, an expired order, and the photo
surviving Telegram's 429 through the outbox. Run for every rig in tests/e2e/qr_rigs.py."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlmodel import col

from billing.check_now import ASK_EVERY
from billing.qr_image import qr_png
from sandbox.telegram.client import SentMessage
from storage.models import Membership, Order, Payment, WebhookEvent
from tests.e2e.qr_rigs import RIGS, DoubleRig, QrRig, qr_checkout, qr_world
from tests.e2e.world import BUYER, OWNER, World

LI = 5005  # a buyer whose Telegram speaks Chinese


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


def invites(msgs: list[SentMessage]) -> list[SentMessage]:
    return [m for m in msgs if any("t.me/+" in u for u in m.button_urls)]


async def paid_check(world: World, photo: SentMessage, needle: str) -> SentMessage:
    return await world.press(
        BUYER, photo, "paidchk:", match=lambda m: needle in (m.text or ""), timeout=15
    )


async def test_qr_photo_then_i_have_paid_grants_once(world: World, rig: QrRig) -> None:
    photo = await qr_checkout(world, rig)
    order = await the_order(world)
    assert order.status == "pending" and order.provider == rig.name and order.checkout_url
    # The photo is the order's own QR code, with what the buyer needs to know.
    assert photo.photo_bytes == qr_png(order.checkout_url)
    caption = photo.text or ""
    assert f"Scan this QR code with {rig.app_en}" in caption
    assert "9.90 CNY" in caption and order.order_no in caption
    assert re.search(r"works for (59|60) more minutes", caption), caption
    # Buttons: the pay page (an https/http link, never the weixin:// payload) and the check.
    assert photo.button_urls == [f"{world.public_url}/pay/{order.order_no}"]
    assert photo.callback_data == [f"paidchk:{order.order_no}"]

    # "I have paid" before paying: asked at the provider, not paid yet, minutes left.
    reply = await paid_check(world, photo, "has not arrived yet")
    assert re.search(r"works for (59|60) more minutes", reply.text or ""), reply.text

    # Paid at the provider; its notification does not come. The button finds the payment
    # (pressed again after ASK_EVERY: a press sooner is answered without asking).
    await rig.pay(world, order.order_no)
    world.clock.advance(ASK_EVERY)
    await paid_check(world, photo, "Payment received for order")
    await world.invite_for(BUYER, timeout=15)
    assert (await the_order(world)).status == "paid"
    assert await world.count(WebhookEvent, col(WebhookEvent.provider) == rig.name) == 1

    # The notification arrives after all: recorded, nothing granted twice.
    await rig.notify(world, order.order_no)
    await world.eventually(
        lambda: _events(world, rig.name, 2),
    )
    assert await world.count(Payment) == 1 and await world.count(Membership) == 1
    await paid_check(world, photo, "is paid already")
    assert len(invites(await world.tg.sent_messages(BUYER))) == 1


async def _events(world: World, provider: str, n: int) -> bool:
    return await world.count(WebhookEvent, col(WebhookEvent.provider) == provider) == n


async def test_an_expired_order_says_so_and_its_code_no_longer_pays(
    world: World, rig: QrRig
) -> None:
    photo = await qr_checkout(world, rig)
    order = await the_order(world)
    world.clock.advance(timedelta(minutes=61))
    await world.service.sweeps.run_sweeps_once(world.clock.now())  # closed at the provider
    assert (await the_order(world)).status == "expired"
    await paid_check(world, photo, "has expired")
    with pytest.raises(Exception):  # noqa: B017 - each provider refuses in its own words
        await rig.pay(world, order.order_no)
    assert await world.count(Payment) == 0


async def test_a_chinese_buyer_gets_the_caption_and_buttons_in_chinese(
    world: World, rig: QrRig
) -> None:
    await world.tg.create_user(LI, "Li", language_code="zh-hans")
    await world.tg.send_text(LI, "/help")
    photo = await qr_checkout(world, rig, buyer=LI)
    order = await the_order(world)
    assert f"请用{rig.app_zh}扫描此二维码付款" in (photo.text or "")
    assert order.order_no in (photo.text or "")
    labels = [b["text"] for b in photo.buttons]
    assert labels == ["打开付款页面", "我已付款"]


async def test_a_long_429_on_the_photo_hands_it_to_the_outbox_with_its_image(
    world: World, rig: QrRig
) -> None:
    """Telegram says retry in 7 s, longer than a handler waits: the staged reply (its
    image inline) is sent by the outbox worker, the same photo, once."""
    await world.tg.inject_fault("sendPhoto", error_code=429, retry_after=7, count=1)
    photo = await qr_checkout(world, rig)
    order = await the_order(world)
    assert order.checkout_url and photo.photo_bytes == qr_png(order.checkout_url)
    assert photo.callback_data == [f"paidchk:{order.order_no}"]
    sent = await world.tg.calls("sendPhoto")
    assert [c["ok"] for c in sent] == [False, True]
    assert len([m for m in await world.tg.sent_messages(BUYER) if m.kind == "photo"]) == 1


async def test_a_payload_that_cannot_be_drawn_still_gets_the_pay_page_link(
    db_url: tuple[str, str | None],
) -> None:
    """Never silence: a QR payload no code can hold (no real provider sends one, so the
    double stands in) is answered with the pay page link and the check button, as text."""
    rig = DoubleRig("wechatpay", "wechat", "weixin://wxpay/bizpayurl?pr=", "WeChat", "微信")
    rig.double.payload_prefix = "weixin://wxpay/bizpayurl?pr=" + "x" * 2000
    async with qr_world(db_url, rig) as world:
        await _oversized(world, rig)


async def _oversized(world: World, rig: QrRig) -> None:
    groups = await world.ask(BUYER, "/start", match=lambda m: bool(m.callback_data))
    plans = await world.press(BUYER, groups, "grp:", match=lambda m: bool(m.callback_data))
    methods = await world.press(BUYER, plans, "pln:", match=lambda m: bool(m.callback_data))
    reply = await world.press(
        BUYER, methods, "pay:", match=lambda m: bool(m.buttons), suffix=f":{rig.name}:CNY"
    )
    order = await the_order(world)
    assert reply.kind == "text" and "Open the pay page" in (reply.text or "")
    assert reply.button_urls == [f"{world.public_url}/pay/{order.order_no}"]
    assert reply.callback_data == [f"paidchk:{order.order_no}"]


async def test_a_subscription_plan_does_not_offer_a_qr_payment(world: World, rig: QrRig) -> None:
    """WeChat Pay Native and Alipay face-to-face bill once: a recurring plan priced in CNY
    offers only what can renew it (here the sandbox), never the QR provider."""
    reply = await world.ask(
        OWNER, "/addsub 1 1m 19.90CNY CNY subscription", match=lambda m: "#" in (m.text or "")
    )
    assert "subscription" in (reply.text or ""), reply.text
    groups = await world.ask(BUYER, "/start", match=lambda m: bool(m.callback_data))
    plans = await world.press(BUYER, groups, "grp:", match=lambda m: bool(m.callback_data))
    sub = next(
        c
        for b, c in zip(plans.buttons, plans.callback_data, strict=True)
        if "CNY subscription" in b["text"]
    )
    methods = await world.press(
        BUYER, plans, sub, match=lambda m: "pay:" in " ".join(m.callback_data)
    )
    assert not [c for c in methods.callback_data if f":{rig.name}:" in c], methods.callback_data
    assert [c for c in methods.callback_data if ":sandbox:CNY" in c]
