"""Alipay face-to-face through the real service, with the local Alipay gateway beside it
(sandbox/alipay_host.py, signing with RSA keys made at start): an order for a CNY plan gets a
QR code by alipay.trade.precreate; the buyer scans and pays; Alipay's signed notification
grants once (answered exactly `success`) and the buyer gets the invite. Duplicates and
TRADE_FINISHED grant nothing more; a wrong amount is a mismatch; an unknown order and forged
notifications change nothing; a lost notification is granted by reconciliation's query; a
never-scanned order stays open, and at its timeout is closed so its code no longer pays;
the owner's /refund goes through alipay.trade.refund, is settled at once, removes the buyer,
and Alipay's refund notification afterwards changes nothing more."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlmodel import col

from billing.checkout import open_checkout
from billing.reconcile import reconcile_pending
from sandbox.alipay_host import FakeAlipay, Notification, new_key, signed_notification
from sandbox.alipay_trades import Refusal
from storage.models import Membership, Order, Payment, Plan, User, WebhookEvent
from storage.money import Money
from tests.e2e.conftest import start_world, stop_world
from tests.e2e.world import BUYER, GROUP, OWNER, World

PLAN = "30d 9.90CNY Monthly access"
TIMEOUT = timedelta(minutes=60)


@pytest.fixture
async def world(db_url) -> AsyncIterator[World]:
    host = FakeAlipay()
    w, emulator = await start_world(db_url, hosts=[host])
    host.clock = w.clock  # trades expire on the service's (movable) time
    try:
        yield w
    finally:
        await stop_world(w, emulator)


def alipay(world: World) -> FakeAlipay:
    host = world.hosts["alipay"]
    assert isinstance(host, FakeAlipay)
    return host


async def open_order(world: World) -> Order:
    """The buyer's order for the CNY plan, through billing.checkout (the bot's own path)."""
    async with world.db.session() as s:
        user = (
            await s.execute(select(User).where(col(User.platform_user_id) == str(BUYER)))
        ).scalar_one()
        plan = (await s.execute(select(Plan))).scalars().first()
        started = await open_checkout(
            s,
            world.service.providers["alipay"],
            user,
            plan,
            Money(990, "CNY"),
            world.clock.now(),
            public_url=world.public_url,
            timeout=TIMEOUT,
        )
        assert started.shown == "qr"
        return started.order


async def answered(n: Notification, world: World, count: int = 1) -> None:
    async def done() -> bool:
        return len(n.answers) >= count

    await world.eventually(done)


async def charges(world: World) -> list[Payment]:
    return await world.rows(Payment, col(Payment.kind) == "charge")


async def order_status(world: World, order_no: str) -> str:
    (o,) = await world.rows(Order, col(Order.order_no) == order_no)
    return o.status


async def test_scan_and_pay_grants_once_and_repeats_change_nothing(world: World):
    host = alipay(world)
    await world.set_up_shop(PLAN)
    order = await open_order(world)
    assert order.checkout_url == host.trade(order.order_no).qr_code  # the QR payload
    trade_no = host.pay(qr_code=order.checkout_url)

    link = await world.invite_for(BUYER)
    assert await world.tg.join_by_link(BUYER, link) == "requested"
    await world.wait_status(GROUP, BUYER, "member")
    (paid,) = host.notifications
    await answered(paid, world)
    assert paid.answers == [(200, "success")]  # exactly: anything else makes Alipay retry

    # The same notification again, and TRADE_FINISHED at the end of the refund period.
    host.resend(paid.notify_id)
    finished = host.finish(order.order_no)
    await answered(finished, world)
    await answered(paid, world, 2)
    assert finished.answers == [(200, "success")] and paid.answers[-1] == (200, "success")
    (charge,) = await charges(world)
    assert (charge.provider_payment_id, charge.amount_minor, charge.currency) == (
        trade_no,
        990,
        "CNY",
    )
    assert await order_status(world, order.order_no) == "paid"
    assert len(await world.rows(Membership)) == 1
    invites = [
        m for m in await world.tg.sent_messages(BUYER) if any("t.me/+" in u for u in m.button_urls)
    ]
    assert len(invites) == 1
    events = await world.rows(WebhookEvent, col(WebhookEvent.provider) == "alipay")
    assert {e.event_type for e in events} == {
        "trade_status_sync.TRADE_SUCCESS",
        "trade_status_sync.TRADE_FINISHED",
    }
    assert all(e.error is None for e in events)


async def test_wrong_amount_unknown_order_and_forgeries(world: World):
    host = alipay(world)
    await world.set_up_shop(PLAN)
    order = await open_order(world)
    base = {
        "notify_type": "trade_status_sync",
        "notify_time": "2026-12-01 08:00:00",
        "app_id": host.app_id,
        "charset": "utf-8",
        "version": "1.0",
        "trade_status": "TRADE_SUCCESS",
        "trade_no": "2026120122001400000000000077",
    }
    # Signed by Alipay, but 0.99 for a 9.90 order: recorded as a mismatch, nothing granted.
    wrong = host.notify(
        {**base, "notify_id": "n-wrong", "out_trade_no": order.order_no, "total_amount": "0.99"},
        url=f"{world.public_url}/webhooks/alipay",
    )
    # An order we never made: recorded, answered, nothing else.
    unknown = host.notify(
        {**base, "notify_id": "n-unknown", "out_trade_no": "GPNOSUCHORDR", "total_amount": "9.90",
         "trade_no": "2026120122001400000000000078"},
        url=f"{world.public_url}/webhooks/alipay",
    )  # fmt: skip
    await answered(wrong, world)
    await answered(unknown, world)
    assert wrong.answers[0] == (200, "success") and unknown.answers[0] == (200, "success")
    assert await order_status(world, order.order_no) == "failed"
    (by_id,) = await world.rows(WebhookEvent, col(WebhookEvent.event_id) == "n-wrong")
    assert by_id.error is not None and by_id.error.startswith("mismatch")
    (by_id,) = await world.rows(WebhookEvent, col(WebhookEvent.event_id) == "n-unknown")
    assert by_id.error is not None and by_id.error.startswith("unknown_order")
    assert await world.count(Membership) == 0
    # The money that did arrive is on record once, kept apart for the owner to refund.
    (extra,) = await charges(world)
    assert (extra.amount_minor, extra.currency, extra.extra) == (99, "CNY", True)

    # Forged: signed with another key, or Alipay's body with its amount changed. 400, `fail`,
    # nothing stored.
    fields = {**base, "notify_id": "n-forged", "out_trade_no": order.order_no}
    forged = signed_notification(new_key(), {**fields, "total_amount": "9.90"})
    tampered = signed_notification(host.alipay_key, {**fields, "total_amount": "0.99"}).replace(
        b"total_amount=0.99", b"total_amount=9.90"
    )
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    for body in (forged, tampered):
        assert await world.post("/webhooks/alipay", body, headers) == (400, "fail")
    assert await world.count(WebhookEvent, col(WebhookEvent.event_id) == "n-forged") == 0


async def test_lost_notification_is_granted_by_the_query_then_arrives_as_nothing(world: World):
    host = alipay(world)
    await world.set_up_shop(PLAN)
    order = await open_order(world)
    host.lose_next(1)
    trade_no = host.pay(order.order_no)
    (lost,) = host.notifications
    assert lost.lost and lost.answers == []
    world.clock.advance(timedelta(minutes=6))  # older than reconcile's min_age
    counts = await reconcile_pending(
        world.db,
        world.service.providers,
        world.clock.now(),
        order_timeout=TIMEOUT,
        on_commit=world.service.wake_outbox,
    )
    assert counts["granted"] == 1 and counts["errors"] == 0
    await world.invite_for(BUYER)
    # Alipay's retry of it, much later: answered `success`, nothing more.
    host.resend(lost.notify_id)
    await answered(lost, world)
    assert lost.answers == [(200, "success")]
    (charge,) = await charges(world)
    assert charge.provider_payment_id == trade_no
    assert await world.count(Membership) == 1


async def test_never_scanned_is_open_then_closed_at_timeout_and_the_code_dies(world: World):
    host = alipay(world)
    await world.set_up_shop(PLAN)
    never = await open_order(world)
    scanned = await open_order(world)
    host.scan(scanned.order_no)  # scanned, never paid: WAIT_BUYER_PAY

    world.clock.advance(timedelta(minutes=6))
    counts = await reconcile_pending(
        world.db, world.service.providers, world.clock.now(), order_timeout=TIMEOUT
    )
    assert (counts["open"], counts["errors"]) == (2, 0)  # ACQ.TRADE_NOT_EXIST is no error

    world.clock.advance(TIMEOUT)  # past the orders' timeout (and their time_expire)
    counts = await reconcile_pending(
        world.db, world.service.providers, world.clock.now(), order_timeout=TIMEOUT
    )
    assert (counts["expired"], counts["errors"]) == (2, 0)
    assert await order_status(world, never.order_no) == "expired"
    assert await order_status(world, scanned.order_no) == "expired"
    for order in (never, scanned):
        with pytest.raises(Refusal, match="TRADE_HAS_CLOSE"):
            host.pay(qr_code=order.checkout_url)
    # The scanned trade's TRADE_CLOSED notification is recorded, and changes nothing.
    (closed,) = host.notifications
    await answered(closed, world)
    assert closed.answers == [(200, "success")]
    (event,) = await world.rows(WebhookEvent, col(WebhookEvent.provider) == "alipay")
    assert (event.event_type, event.error) == ("trade_status_sync.TRADE_CLOSED", None)
    assert await world.count(Membership) == 0


async def test_owner_refund_settles_removes_the_buyer_and_the_notification_changes_nothing(
    world: World,
):
    host = alipay(world)
    await world.set_up_shop(PLAN)
    order = await open_order(world)
    trade_no = host.pay(order.order_no)
    link = await world.invite_for(BUYER)
    assert await world.tg.join_by_link(BUYER, link) == "requested"
    await world.wait_status(GROUP, BUYER, "member")

    since = await world.last_id(BUYER)
    # Alipay's notification of the refund is held back: the refund call itself settles it.
    host.lose_next(1)
    await world.ask(
        OWNER, f"/refund {order.order_no}", match=lambda m: "requested" in (m.text or "")
    )
    await world.wait_status(GROUP, BUYER, "left")
    await world.wait_text(BUYER, "was refunded", since=since)
    trade = host.trade(order.order_no)
    (refund,) = trade.refunds.values()
    assert (refund.fen, trade.status) == (990, "TRADE_CLOSED")
    assert refund.out_request_no == f"gatepass-refund-order-alipay-{order.order_no}-1"

    # Alipay's notification of that refund, sent now: answered `success`, nothing more.
    note = next(n for n in host.notifications if n.fields.get("out_biz_no"))
    assert note.lost and note.fields["out_biz_no"] == refund.out_request_no
    host.resend(note.notify_id)
    await answered(note, world)
    assert note.answers == [(200, "success")]

    async def notification_recorded() -> bool:
        return await world.count(WebhookEvent, col(WebhookEvent.event_id) == note.notify_id) == 1

    await world.eventually(notification_recorded)
    refunds = await world.rows(Payment, col(Payment.kind) == "refund")
    assert [(r.provider_payment_id, r.amount_minor, r.reverses) for r in refunds] == [
        (refund.out_request_no, 990, trade_no)
    ]
    (o,) = await world.rows(Order)
    (m,) = await world.rows(Membership)
    assert (o.status, m.status) == ("refunded", "revoked")
    texts = [x.text or "" for x in await world.tg.sent_messages(BUYER, since=since)]
    assert sum("was refunded" in t for t in texts) == 1
