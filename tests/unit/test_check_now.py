""" "I have paid" (billing/check_now.py) against the QR provider double: every result, and
that a grant is reconciliation's own event, so the provider's notification after it is a
no-op."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from billing.check_now import ASK_EVERY, Check, check_now
from billing.errors import PaymentError
from billing.ingest import ingest_webhook
from storage.models import Membership, Order, Outbox, Payment, TelegramUpdate, WebhookEvent
from storage.money import Money
from storage.updates import claim_update
from tests.factories import make_shop, start_order
from tests.qr_provider import QrProviderDouble

PRICE = Money(990, "CNY")


@pytest.fixture
def qr() -> QrProviderDouble:
    return QrProviderDouble()


async def count(db, model, *where) -> int:
    async with db.session() as s:
        return (await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one()


async def shop_and_order(db, qr, now):
    shop = await make_shop(db, now, prices=(PRICE,))
    order = await start_order(db, qr, shop, now, price=PRICE, timeout=timedelta(minutes=30))
    return shop, order


async def check(db, qr, order_no, user_id, now, **kw):
    """As the bot's handler does: in a session the caller commits."""
    async with db.session() as s:
        result = await check_now(s, {qr.name: qr}, order_no, user_id, now, **kw)
        await s.commit()
    return result


async def test_unpaid_order_is_still_open_with_the_minutes_left(db, qr, now):
    shop, order = await shop_and_order(db, qr, now)
    later = now + timedelta(minutes=10, seconds=30)
    got = await check(db, qr, order.order_no, shop.buyer.id, later)
    assert got.result is Check.STILL_OPEN and got.minutes_left(later) == 20
    assert qr.status_calls == 1
    async with db.session() as s:
        assert (await s.get(Order, order.id)).status == "pending"


async def test_paid_at_the_provider_grants_once_and_the_notification_changes_nothing(db, qr, now):
    shop, order = await shop_and_order(db, qr, now)
    qr.pay(order.order_no)  # paid; the notification has not come
    got = await check(db, qr, order.order_no, shop.buyer.id, now + timedelta(minutes=1))
    assert got.result is Check.PAID_NOW
    async with db.session() as s:
        assert (await s.get(Order, order.id)).status == "paid"
    assert (
        await count(db, WebhookEvent, col(WebhookEvent.event_id) == f"reconcile:{order.order_no}")
        == 1
    )
    assert await count(db, Payment) == 1 and await count(db, Membership) == 1
    outbox = await count(db, Outbox)
    assert outbox >= 1  # the invite (and the buyer's note) go out through the outbox
    # Pressed again: paid already, nothing new.
    again = await check(db, qr, order.order_no, shop.buyer.id, now + timedelta(minutes=2))
    assert again.result is Check.ALREADY_PAID
    # The provider's notification arrives after all: verified, recorded, no second grant.
    headers, body = qr.notification(order.order_no)
    ack, outcome = await ingest_webhook(db, qr, headers, body, now + timedelta(minutes=3))
    assert ack.status == 200 and outcome == "already_paid"
    assert await count(db, Payment) == 1 and await count(db, Membership) == 1
    assert await count(db, Outbox) == outbox


async def test_notification_first_then_the_button_says_paid_already(db, qr, now):
    shop, order = await shop_and_order(db, qr, now)
    qr.pay(order.order_no)
    headers, body = qr.notification(order.order_no)
    assert (await ingest_webhook(db, qr, headers, body, now))[1] == "granted"
    calls = qr.status_calls
    got = await check(db, qr, order.order_no, shop.buyer.id, now)
    assert got.result is Check.ALREADY_PAID and qr.status_calls == calls  # nothing to ask
    assert await count(db, Payment) == 1


async def test_only_the_buyer_may_check_and_bad_numbers_never_reach_the_provider(db, qr, now):
    shop, order = await shop_and_order(db, qr, now)
    qr.pay(order.order_no)
    got = await check(db, qr, order.order_no, shop.owner.id, now)
    assert got.result is Check.NOT_YOURS
    for bad in ("GP" + "A" * 10, "../etc", "", "gp" + order.order_no[2:], order.order_no + "X"):
        assert (await check(db, qr, bad, shop.buyer.id, now)).result is Check.UNKNOWN
    assert qr.status_calls == 0
    async with db.session() as s:
        assert (await s.get(Order, order.id)).status == "pending"  # the stranger granted nothing


async def test_past_its_time_or_closed_at_the_provider_is_expired(db, qr, now):
    shop, order = await shop_and_order(db, qr, now)
    late = now + timedelta(minutes=31)
    assert (await check(db, qr, order.order_no, shop.buyer.id, late)).result is Check.EXPIRED
    await qr.expire_checkout(order.provider_ref)  # reconciliation closed it
    assert (await check(db, qr, order.order_no, shop.buyer.id, now)).result is Check.EXPIRED
    async with db.session() as s:
        assert (await s.get(Order, order.id)).status == "pending"  # marking is reconcile's job


async def test_a_payment_that_landed_on_an_expired_order_is_honoured(db, qr, now):
    shop, order = await shop_and_order(db, qr, now)
    qr.pay(order.order_no)
    async with db.transaction() as s:
        (await s.get(Order, order.id)).status = "expired"
    late = now + timedelta(minutes=40)
    assert (await check(db, qr, order.order_no, shop.buyer.id, late)).result is Check.PAID_NOW
    assert await count(db, Payment) == 1


async def test_provider_failure_or_silence_is_a_provider_error_and_changes_nothing(db, qr, now):
    shop, order = await shop_and_order(db, qr, now)
    qr.pay(order.order_no)
    qr.fail_status = PaymentError("SYSTEM_ERROR")
    got = await check(db, qr, order.order_no, shop.buyer.id, now)
    assert got.result is Check.PROVIDER_ERROR
    qr.fail_status, qr.status_delay = None, 2.0
    got = await check(db, qr, order.order_no, shop.buyer.id, now + ASK_EVERY, timeout=0.05)
    assert got.result is Check.PROVIDER_ERROR
    assert await count(db, Payment) == 0 and await count(db, WebhookEvent) == 0


async def test_a_reported_amount_the_order_cannot_take_is_for_review(db, qr, now):
    shop, order = await shop_and_order(db, qr, now)
    qr.pay(order.order_no)
    qr.order(order.order_no).amount_minor = 1  # the provider reports 0.01 CNY
    got = await check(db, qr, order.order_no, shop.buyer.id, now)
    assert got.result is Check.REVIEW
    async with db.session() as s:  # the ledger's rule: a mismatch fails the order, flagged
        assert (await s.get(Order, order.id)).status == "failed"
    # Pressed again: the order is closed; still nothing granted.
    assert (await check(db, qr, order.order_no, shop.buyer.id, now)).result is Check.CLOSED
    assert await count(db, Membership) == 0


async def test_tapping_away_asks_the_provider_once_per_interval(db, qr, now):
    """A provider rate-limits its query API per merchant: a buyer (or a client replaying the
    button's data) pressing over and over asks it once per ASK_EVERY; presses in between,
    or while a question is in flight, ask nothing and are told to wait a moment (the press
    before may yet find the payment: "not paid" would be a guess)."""
    shop, order = await shop_and_order(db, qr, now)
    got = await check(db, qr, order.order_no, shop.buyer.id, now)
    assert got.result is Check.STILL_OPEN
    for i in range(1, 5):
        at = now + timedelta(milliseconds=300 * i)
        assert (await check(db, qr, order.order_no, shop.buyer.id, at)).result is Check.TOO_SOON
    assert qr.status_calls == 1
    qr.status_delay = 0.3
    later = now + ASK_EVERY
    got_all = await asyncio.gather(
        *(check(db, qr, order.order_no, shop.buyer.id, later) for _ in range(5))
    )
    assert sorted(g.result for g in got_all) == sorted([Check.STILL_OPEN] + [Check.TOO_SOON] * 4)
    assert qr.status_calls == 2
    # Paid meanwhile: the next press after the interval asks, and grants.
    qr.pay(order.order_no)
    got = await check(db, qr, order.order_no, shop.buyer.id, later + ASK_EVERY)
    assert got.result is Check.PAID_NOW and qr.status_calls == 3
    # Then our records answer: paid already, without asking.
    got = await check(db, qr, order.order_no, shop.buyer.id, later + ASK_EVERY)
    assert got.result is Check.ALREADY_PAID and qr.status_calls == 3


@pytest.mark.parametrize("webhook_delay", [0.0, 0.01, 0.05])
async def test_the_button_and_the_notification_at_once_grant_once(db, qr, now, webhook_delay):
    """The buyer presses "I have paid" as the provider's notification arrives, in either
    order of arrival: one payment, one grant, and both sides answer (the notification
    acknowledged, the button told paid)."""
    shop = await make_shop(db, now, prices=(PRICE,))
    for i in range(4):
        order = await start_order(db, qr, shop, now, price=PRICE, timeout=timedelta(minutes=30))
        qr.pay(order.order_no)
        headers, body = qr.notification(order.order_no)

        async def notify(headers=headers, body=body):
            await asyncio.sleep(webhook_delay)
            return await ingest_webhook(db, qr, headers, body, now)

        pressed, (ack, outcome) = await asyncio.gather(
            check(db, qr, order.order_no, shop.buyer.id, now + ASK_EVERY * i), notify()
        )
        assert ack.status == 200
        assert {pressed.result.value, outcome} in (
            {"paid_now", "already_paid"},
            {"already_paid", "granted"},
        ), (pressed, outcome)
        async with db.session() as s:
            assert (await s.get(Order, order.id)).status == "paid"
    assert await count(db, Payment) == 4


async def test_a_crash_while_the_provider_is_asked_leaves_the_update_to_be_applied_again(
    db, qr, now
):
    """The process dies while the provider is being asked: nothing of the update may have
    been committed, its claim included, or Telegram's next delivery of the press would be
    skipped as applied and the buyer never answered. The redelivery then grants."""
    shop, order = await shop_and_order(db, qr, now)
    qr.pay(order.order_no)

    class Crash(BaseException):  # not an Exception: the process going away
        pass

    qr.fail_status = Crash()
    with pytest.raises(Crash):
        async with db.session() as s:
            assert await claim_update(s, 4242, 77, now)  # as bot/middlewares.py does
            await check_now(s, {qr.name: qr}, order.order_no, shop.buyer.id, now)
    assert await count(db, TelegramUpdate) == 0
    qr.fail_status = None
    later = now + ASK_EVERY
    async with db.session() as s:  # Telegram sends the update again
        assert await claim_update(s, 4242, 77, later)
        got = await check_now(s, {qr.name: qr}, order.order_no, shop.buyer.id, later)
        await claim_update(s, 4242, 77, later)  # the middleware claims a lost claim again
        await s.commit()
    assert got.result is Check.PAID_NOW
    assert await count(db, TelegramUpdate) == 1 and await count(db, Payment) == 1
