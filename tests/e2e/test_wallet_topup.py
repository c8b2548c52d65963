"""Issue 11, top-ups end to end: the owner sells a top-up (/addtopup, /topups), the buyer
buys it from /wallet through Stripe and sees the balance; the webhook delivered again
credits nothing more; WeChat Pay by QR code; an unpaid top-up expires at the provider like
any order."""

from __future__ import annotations

from datetime import timedelta

import aiohttp
from sqlmodel import col

from storage.models import Order, Outbox, TopupProduct, WalletEntry
from tests.e2e.qr_rigs import WechatPayRig, qr_world
from tests.e2e.world import BUYER, OWNER, World


def session_id(checkout_url: str) -> str:
    return checkout_url.rstrip("/").rsplit("/", 1)[1]


async def sweep(world: World, **delta: float) -> None:
    world.clock.advance(timedelta(**delta))
    await world.service.sweeps.run_sweeps_once(world.clock.now())


async def sell_topup(world: World, args: str = "10USD 1USD") -> None:
    await world.set_up_shop()
    added = await world.ask(
        OWNER, f"/addtopup {args}", match=lambda m: "Top-up #" in (m.text or "")
    )
    assert "10.00 USD" in added.text and "1.00 USD" in added.text


async def topup_checkout(world: World) -> str:
    """The buyer opens /wallet, picks the top-up and Stripe; returns the checkout URL."""
    wallet = await world.ask(BUYER, "/wallet", match=lambda m: bool(m.callback_data))
    assert "Your wallet is empty." in wallet.text
    methods = await world.press(BUYER, wallet, "tpu:", match=lambda m: bool(m.callback_data))
    pay = await world.press(
        BUYER, methods, "tpp:", match=lambda m: bool(m.button_urls), suffix=":stripe"
    )
    assert "Top-up 10.00 USD (+1.00 USD bonus)" in pay.text
    assert "the balance is in your wallet right after the payment" in pay.text
    return pay.button_urls[0]


async def test_bad_addtopup_gets_one_line_and_usage_and_adds_nothing(world: World):
    await world.set_up_shop()
    for args, reason in [
        ("", "missing"),
        ("10USD 1EUR", "must be in USD"),
        ("250XTR", "Telegram Stars"),
        ("10", "is not a price"),
    ]:
        reply = await world.ask(
            OWNER, f"/addtopup {args}".strip(), match=lambda m: "Usage:" in (m.text or "")
        )
        assert reason in reply.text, (args, reply.text)
    stranger = await world.ask(BUYER, "/addtopup 10USD", match=lambda m: "Usage:" in (m.text or ""))
    assert "group owner" in stranger.text
    assert await world.count(TopupProduct) == 0
    none = await world.ask(OWNER, "/topups", match=lambda m: "top-up" in (m.text or ""))
    assert "no top-ups" in none.text


async def test_buyer_tops_up_with_stripe_and_the_webhook_twice_credits_once(world: World):
    await sell_topup(world)
    listed = await world.ask(OWNER, "/topups", match=lambda m: "#" in (m.text or ""))
    assert "Top-up 10.00 USD (+1.00 USD bonus)" in listed.text
    sid = session_id(await topup_checkout(world))
    assert world.stripe.sessions[sid]["amount_total"] == 1000
    assert await world.stripe.pay(sid) == 200
    told = await world.wait_text(BUYER, "Your top-up is paid")
    assert "Balance: 11.00 USD" in told.text
    completed = next(e for e in world.stripe.events if e["type"] == "checkout.session.completed")
    for _ in range(2):
        assert await world.stripe.redeliver(completed["id"]) == 200
    (order,) = await world.rows(Order)
    assert (order.kind, order.plan_id, order.status) == ("topup", None, "paid")
    assert sorted(e.amount for e in await world.rows(WalletEntry)) == [100, 1000]
    wallet = await world.ask(BUYER, "/wallet", match=lambda m: "Balance" in (m.text or ""))
    assert "Balance: 11.00 USD" in wallet.text
    assert "top-up bonus" in wallet.text
    orders = await world.ask(BUYER, "/orders", match=lambda m: order.order_no in (m.text or ""))
    assert "Top-up 10.00 USD" in orders.text
    notices = [r.payload["key"] for r in await world.rows(Outbox, col(Outbox.kind) == "notify")]
    assert notices.count("wallet_topped_up") == 1
    # Back from Stripe: the return page speaks of the top-up and the wallet, not of access.
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{world.public_url}/paid/{order.order_no}") as r,
    ):
        page = await r.text()
    assert r.status == 200 and "Top-up 10.00 USD (+1.00 USD bonus)" in page
    assert "balance is in your wallet" in page and "Access to" not in page


async def test_an_unpaid_topup_expires_at_the_provider(world: World):
    await sell_topup(world)
    sid = session_id(await topup_checkout(world))
    await sweep(world, minutes=61)
    (order,) = await world.rows(Order)
    assert order.status == "expired"
    assert world.stripe.sessions[sid]["status"] == "expired"
    assert await world.count(WalletEntry) == 0


async def test_buyer_tops_up_with_wechat_pay_by_qr_code(db_url):
    """The QR photo for a top-up, its pay page naming the top-up, "I have paid" crediting
    a payment whose notification was lost, and that notification later crediting nothing."""
    rig = WechatPayRig()
    async with qr_world(db_url, rig) as world:
        await world.ask(
            OWNER, "/addtopup 100CNY 10CNY", match=lambda m: "Top-up #" in (m.text or "")
        )
        wallet = await world.ask(BUYER, "/wallet", match=lambda m: bool(m.callback_data))
        methods = await world.press(BUYER, wallet, "tpu:", match=lambda m: bool(m.callback_data))
        photo = await world.press(
            BUYER,
            methods,
            "tpp:",
            match=lambda m: m.kind == "photo",
            suffix=f":{rig.name}",
            timeout=15,
        )
        (order,) = await world.rows(Order)
        assert order.kind == "topup" and order.order_no in (photo.text or "")
        assert "Top-up 100.00 CNY (+10.00 CNY bonus)" in (photo.text or "")
        assert "the balance is in your wallet" in (photo.text or "")
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{world.public_url}/pay/{order.order_no}") as r,
        ):
            page = await r.text()
        assert r.status == 200 and "Top-up 100.00 CNY (+10.00 CNY bonus)" in page
        assert "Access to" not in page
        await rig.pay(world, order.order_no)
        await world.press(
            BUYER,
            photo,
            "paidchk:",
            match=lambda m: "The balance is in your wallet" in (m.text or ""),
            timeout=15,
        )
        told = await world.wait_text(BUYER, "Your top-up is paid")
        assert "Balance: 110.00 CNY" in told.text
        await rig.notify(world, order.order_no)
        assert sorted(e.amount for e in await world.rows(WalletEntry)) == [1000, 10000]
