"""WeChat Pay Native, end to end: the real service beside the local WeChat Pay host
(sandbox/wechatpay_host.py), which signs its answers and notifications with RSA keys made
at start and encrypts notifications with its APIv3 key.

A CNY order is opened through billing.checkout.open_checkout (the bot's QR message is the
buyer-side change's); the host "scans and pays"; its signed, encrypted TRANSACTION.SUCCESS
grants once and the buyer gets the invite. Duplicates, a wrong amount, an unknown order, a
lost notification (reconciliation grants by query), the timeout (closed at WeChat Pay, the
code pays no more), a payment in flight at the timeout, and the owner's /refund settled by
REFUND.SUCCESS."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlmodel import col

from billing.checkout import StartedCheckout, open_checkout
from billing.provider import Checkout, CheckoutRequest, PaymentProvider
from billing.reconcile import reconcile_pending
from sandbox.wechatpay.merchant import ApiError
from sandbox.wechatpay_host import FakeWechatPay
from storage.models import Membership, Order, Payment, Plan, User, WebhookEvent
from storage.money import Money
from tests.e2e.conftest import start_world, stop_world
from tests.e2e.world import BUYER, GROUP, OWNER, World

PRICE = Money(990, "CNY")
TIMEOUT = timedelta(minutes=60)


@pytest.fixture
async def wx(db_url: tuple[str, str | None]) -> AsyncIterator[tuple[World, FakeWechatPay]]:
    host = FakeWechatPay()
    world, emulator = await start_world(db_url, hosts=[host])
    try:
        await world.set_up_shop("30d 9.90CNY 月卡 Monthly")
        yield world, host
    finally:
        await stop_world(world, emulator)


async def open_order(world: World, provider: PaymentProvider | None = None) -> StartedCheckout:
    """The buyer picks the CNY plan and WeChat Pay: our pending order and its Native order."""
    async with world.db.session() as s:
        user = (
            await s.execute(select(User).where(col(User.platform_user_id) == str(BUYER)))
        ).scalar_one()
        plan = (await s.execute(select(Plan))).scalars().first()
        assert plan is not None
        return await open_checkout(
            s,
            provider or world.service.providers["wechatpay"],
            user,
            plan,
            PRICE,
            world.clock.now(),
            public_url=world.public_url,
            timeout=TIMEOUT,
        )


async def order_row(world: World, order_no: str) -> Order:
    (order,) = await world.rows(Order, col(Order.order_no) == order_no)
    return order


async def status_is(world: World, order_no: str, status: str) -> None:
    async def check() -> bool:
        return (await order_row(world, order_no)).status == status

    await world.eventually(check)


async def sweep(world: World, after: timedelta) -> dict[str, int]:
    """The reconciliation sweep, `after` from now on the service's clock."""
    world.clock.advance(after)
    return await reconcile_pending(
        world.db, world.service.providers, world.clock.now(), order_timeout=TIMEOUT
    )


def has(text: str):
    return lambda m: text in (m.text or "")


async def test_scan_and_pay_grants_once_and_repeats_change_nothing(wx):
    world, host = wx
    started = await open_order(world)
    order = started.order
    assert started.shown == "qr"
    assert order.checkout_url is not None and order.checkout_url.startswith("weixin://wxpay/")
    assert order.provider_ref == order.order_no
    native = host.merchant.order(order.order_no)
    assert (native.total, native.notify_url) == (990, f"{world.public_url}/webhooks/wechatpay")
    assert native.time_expire == order.expires_at.replace(microsecond=0)

    paid = host.scan(order.checkout_url)
    link = await world.invite_for(BUYER)
    assert await world.tg.join_by_link(BUYER, link) == "requested"
    await world.wait_status(GROUP, BUYER, "member")
    (note,) = host.notifications
    assert note.delivered and note.attempts[-1].status == 204 and note.attempts[-1].body == ""
    assert (await order_row(world, order.order_no)).status == "paid"

    # WeChat sends it again (freshly signed), and someone replays the first delivery as is:
    # both are acknowledged; nothing new is recorded.
    again = await host.notifier.resend(note.id)
    replayed = await host.notifier.replay(note.id)
    assert again.status == replayed.status == 204
    payments = await world.rows(Payment)
    assert [(p.kind, p.amount_minor, p.currency, p.provider_payment_id) for p in payments] == [
        ("charge", 990, "CNY", paid.transaction_id)
    ]
    assert len(await world.rows(Membership)) == 1
    assert await world.count(WebhookEvent, col(WebhookEvent.provider) == "wechatpay") == 1


class WrongAmount:
    """A provider whose Native order asks 0.01 CNY for our 9.90 CNY order (a bug of ours, or
    an order tampered with): WeChat Pay's notification then says what was really paid."""

    def __init__(self, inner: PaymentProvider) -> None:
        self._inner, self.name = inner, inner.name

    def accepts(self, currency: str) -> bool:
        return self._inner.accepts(currency)

    async def create_checkout(self, req: CheckoutRequest) -> Checkout:
        return await self._inner.create_checkout(replace(req, amount_minor=1))


async def test_a_wrong_amount_is_a_mismatch_and_grants_nothing(wx):
    world, host = wx
    wrong = WrongAmount(world.service.providers["wechatpay"])
    order = (await open_order(world, wrong)).order
    paid = host.pay(order.order_no)
    await status_is(world, order.order_no, "failed")
    flagged = await world.wait_text(OWNER, "0.01 CNY")
    (payment,) = await world.rows(Payment)
    assert (payment.amount_minor, payment.extra) == (1, True)
    assert await world.rows(Membership) == []
    (event,) = await world.rows(WebhookEvent, col(WebhookEvent.provider) == "wechatpay")
    assert event.error is not None and "mismatch" in event.error
    assert host.notifications[0].attempts[-1].status == 204  # recorded: WeChat stops sending

    # The owner's one-tap Refund gives the 0.01 CNY back through WeChat Pay; its
    # REFUND.SUCCESS settles that extra charge only.
    await world.press(OWNER, flagged, "xrf:", match=has("0.01 CNY"))

    async def settled() -> bool:
        return await world.count(Payment, col(Payment.kind) == "refund") == 1

    await world.eventually(settled)
    (refund,) = host.refunds
    assert (refund.refund, refund.order.transaction_id) == (1, paid.transaction_id)
    (back,) = await world.rows(Payment, col(Payment.kind) == "refund")
    assert (back.amount_minor, back.extra, back.provider_payment_id) == (1, True, refund.refund_id)
    assert (await order_row(world, order.order_no)).status == "failed"


async def test_an_unknown_order_is_recorded_and_grants_nothing(wx):
    world, host = wx
    provider = world.service.providers["wechatpay"]
    req = CheckoutRequest(
        order_no="GPNOSUCHORDR",
        title="someone else's order",
        amount_minor=990,
        currency="CNY",
        recurring=False,
        duration_days=30,
        success_url="",
        cancel_url="",
        customer_ref="0",
    )
    await provider.create_checkout(req)
    host.pay("GPNOSUCHORDR")

    async def recorded() -> bool:
        return await world.count(WebhookEvent, col(WebhookEvent.error).is_not(None)) == 1

    await world.eventually(recorded)
    (event,) = await world.rows(WebhookEvent)
    assert event.error is not None and "unknown" in event.error
    assert await world.rows(Payment) == [] and await world.rows(Membership) == []


async def test_refused_notifications_answer_in_wechats_shape_and_store_nothing(wx):
    world, host = wx
    host.lose_next(1)  # keep the real delivery out of the way
    order = (await open_order(world)).order
    host.pay(order.order_no)
    (note,) = host.notifications
    headers = host.notifier.signed_headers(note.body)
    cases = [
        (note.body.replace(b'"summary"', b'"Summary"'), headers, "bad WeChat Pay signature"),
        (note.body, host.notifier.signed_headers(note.body, age=400), "s old"),
        (note.body, {k: v for k, v in headers.items() if k != "Wechatpay-Nonce"}, "missing"),
        (note.body, headers | {"Wechatpay-Serial": "PUB_KEY_ID_0000"}, "platform_public_key_id"),
    ]
    for body, hdrs, reason in cases:
        status, text = await world.post("/webhooks/wechatpay", body, hdrs)
        answer = json.loads(text)
        assert status == 400 and answer["code"] == "FAIL" and reason in answer["message"]
    assert await world.count(WebhookEvent) == 0
    assert (await order_row(world, order.order_no)).status == "pending"


async def test_a_lost_notification_is_granted_by_query(wx):
    world, host = wx
    host.lose_next(1)
    order = (await open_order(world)).order
    paid = host.pay(order.order_no)
    assert host.notifications[0].lost and host.notifications[0].attempts == []
    counts = await sweep(world, timedelta(minutes=6))
    assert counts["granted"] == 1
    await world.invite_for(BUYER)
    (payment,) = await world.rows(Payment)
    assert (payment.provider_payment_id, payment.amount_minor) == (paid.transaction_id, 990)
    # The notification, sent after all, changes nothing.
    assert (await host.notifier.resend(host.notifications[0].id)).status == 204
    assert len(await world.rows(Payment)) == 1 and len(await world.rows(Membership)) == 1


async def test_timeout_closes_the_order_at_wechat_and_its_code_pays_no_more(wx):
    world, host = wx
    order = (await open_order(world)).order
    counts = await sweep(world, TIMEOUT + timedelta(minutes=1))
    assert counts["expired"] == 1
    assert (await order_row(world, order.order_no)).status == "expired"
    assert host.merchant.order(order.order_no).state == "CLOSED"
    assert order.checkout_url is not None
    with pytest.raises(ApiError, match="ORDER_CLOSED"):
        host.scan(order.checkout_url)
    assert host.notifications == [] and await world.rows(Payment) == []


async def test_paid_just_before_the_close_is_granted(wx):
    world, host = wx
    host.lose_next(1)
    order = (await open_order(world)).order
    host.pay(order.order_no)
    counts = await sweep(world, TIMEOUT + timedelta(minutes=1))
    assert counts["granted"] == 1  # the close was refused (ORDERPAID); the query says paid
    assert host.merchant.order(order.order_no).state == "SUCCESS"
    await world.invite_for(BUYER)
    assert (await order_row(world, order.order_no)).status == "paid"


async def test_a_payment_in_flight_at_the_timeout_lands_later_and_is_honoured(wx):
    world, host = wx
    order = (await open_order(world)).order
    host.begin_paying(order.order_no)  # the buyer is confirming in WeChat
    counts = await sweep(world, TIMEOUT + timedelta(minutes=1))
    assert counts["expired"] == 1  # ours timed out; WeChat could not close it
    assert (await order_row(world, order.order_no)).status == "expired"
    host.pay(order.order_no)  # the payment goes through after all
    await world.invite_for(BUYER)
    await status_is(world, order.order_no, "paid")
    assert len(await world.rows(Payment)) == 1


async def test_owner_refund_goes_through_wechat_and_its_notification_ends_access(wx):
    world, host = wx
    order = (await open_order(world)).order
    paid = host.pay(order.order_no)
    link = await world.invite_for(BUYER)
    assert await world.tg.join_by_link(BUYER, link) == "requested"
    await world.wait_status(GROUP, BUYER, "member")

    since_buyer = await world.last_id(BUYER)
    asked = await world.ask(OWNER, f"/refund {order.order_no}", match=has("requested"))
    assert "9.90 CNY" in (asked.text or "")
    await world.wait_text(OWNER, f"Refund: 9.90 CNY of order {order.order_no}")
    await world.wait_status(GROUP, BUYER, "left")
    await world.wait_text(BUYER, "was refunded", since=since_buyer)
    (refund,) = host.refunds
    assert refund.out_refund_no == f"gatepass-refund-order-wechatpay-{order.order_no}-1"
    assert (refund.refund, refund.status, refund.order.transaction_id) == (
        990,
        "SUCCESS",
        paid.transaction_id,
    )
    assert [n.event_type for n in host.notifications] == ["TRANSACTION.SUCCESS", "REFUND.SUCCESS"]
    await status_is(world, order.order_no, "refunded")
    rows = await world.rows(Payment)
    assert sorted((p.kind, p.amount_minor, p.provider_payment_id) for p in rows) == [
        ("charge", 990, paid.transaction_id),
        ("refund", 990, refund.refund_id),
    ]
    (m,) = await world.rows(Membership)
    assert m.status == "revoked"
    # Asked again: refunded already; WeChat is not asked again.
    await world.ask(OWNER, f"/refund {order.order_no}", match=has("refunded already"))
    assert len(host.refunds) == 1
