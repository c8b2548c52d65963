"""Attacks on the Telegram surface of issue 8 (Stars, /refund, channels, /starlink,
/broadcast) that once went wrong, played as Telegram users through the emulator."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlmodel import col

from billing.reconcile import reconcile_pending
from storage.models import Membership, Order, Outbox, Payment, StarLink, WebhookEvent
from tests.e2e.test_stars import (
    DAY,
    aware,
    charges,
    net,
    settled,
    stars_invoice,
    stars_link,
    stars_shop,
    sub_shop,
    subscribe,
)
from tests.e2e.world import BUYER, GROUP, OWNER, World

LONG = "x" * 4200  # a reply echoing it whole would pass Telegram's 4096 characters


async def test_a_very_long_bad_argument_still_gets_its_one_line_reason(world: World):
    reply = await world.ask(
        OWNER, f"/refund GP7K2M9QXA4B {LONG}", match=lambda m: "Usage" in (m.text or "")
    )
    assert "/refund" in (reply.text or "") and len(reply.text or "") < 1000
    reply = await world.ask(
        OWNER, f"/starlink 1 {LONG}XTR", match=lambda m: "Usage" in (m.text or "")
    )
    assert "Stars" in (reply.text or "") and len(reply.text or "") < 1000
    reply = await world.ask(OWNER, f"/setup @{LONG}", match=lambda m: "@" in (m.text or ""))
    assert len(reply.text or "") < 1000
    assert await world.count(StarLink) == 0


async def test_a_stars_order_paid_twice_at_once_is_refunded_in_one_tap(world: World):
    """Two payments of one invoice race through pre-checkout (both see the order pending):
    the second is extra money, flagged to the owner; one tap refunds it with
    refundStarPayment naming the buyer, and the order and the access stay."""
    await stars_shop(world)
    invoice = await stars_invoice(world)
    a, b = await asyncio.gather(
        world.tg.pay_invoice(BUYER, invoice.message_id),
        world.tg.pay_invoice(BUYER, invoice.message_id),
    )
    assert {a["status"], b["status"]} <= {"paid", "declined"}
    if "declined" in (a["status"], b["status"]):
        pytest.skip("the emulator ran the two pre-checkouts one after the other")
    await world.invite_for(BUYER)
    notice = await world.tg.wait_for_message(
        OWNER, lambda m: any(c.startswith("xrf:") for c in m.callback_data)
    )
    extra = (await world.rows(Payment, col(Payment.extra).is_(True)))[0]
    done = await world.press(OWNER, notice, "xrf:", match=lambda m: "requested" in (m.text or ""))
    await world.wait_text(OWNER, "Refunded", since=done.message_id)
    (call,) = await world.tg.calls("refundStarPayment")
    assert call["params"] == {
        "user_id": str(BUYER),
        "telegram_payment_charge_id": extra.provider_payment_id,
    }
    (order,) = await world.rows(Order)
    assert order.status == "paid"
    (m,) = await world.rows(Membership)
    assert m.status == "active"


async def test_refund_after_renewals_returns_every_charge_telegram_has_not(world: World):
    """A Stars subscription charged twice; Telegram refunded the first charge by itself.
    The owner's /refund returns the renewal (the charge that still holds Stars), not the
    first charge again; the ledger ends at zero and the subscription is stopped."""
    first = await subscribe(world)
    await world.tg.advance_clock(30 * DAY + 60)

    async def renewed() -> bool:
        return len(await charges(world)) == 2

    await world.eventually(renewed)
    await world.tg.telegram_refund(first["telegram_payment_charge_id"])
    await world.wait_status(GROUP, BUYER, "left")
    (order,) = await world.rows(Order)
    asked = await world.ask(
        OWNER, f"/refund {order.order_no}", match=lambda m: "requested" in (m.text or "")
    )
    assert "250 XTR" in (asked.text or "")

    async def zero() -> bool:
        return await net(world) == 0

    await world.eventually(zero)
    renewal = next(
        p["telegram_payment_charge_id"]
        for p in await world.tg.payments()
        if p["telegram_payment_charge_id"] != first["telegram_payment_charge_id"]
    )
    (call,) = await world.tg.calls("refundStarPayment")
    assert call["params"]["telegram_payment_charge_id"] == renewal
    assert await world.tg.calls("editUserStarSubscription")
    await world.tg.advance_clock(31 * DAY)
    await settled(world)
    assert len(await world.tg.payments()) == 2  # stopped: no charge after the refunds


async def test_a_renewal_missed_while_the_bot_was_down_is_found_in_the_transactions(
    world: World,
):
    """Telegram charged a renewal while the bot was down past its 24 hours: the update is
    lost. Reconciliation finds the payment in getStarTransactions and extends the access
    (else the lapse sweep would remove a member who paid), once."""
    first = await subscribe(world)
    (before,) = await world.rows(Membership)
    (sub,) = await world.tg.star_subscriptions()
    await world.tg.star_subscription_action(sub["charge_id"], "lose")
    await world.tg.advance_clock(30 * DAY + 60)
    (lost,) = [
        p
        for p in await world.tg.payments()
        if p["telegram_payment_charge_id"] != first["telegram_payment_charge_id"]
    ]
    assert lost["delivered"] is False
    await settled(world)
    assert len(await charges(world)) == 1

    kw = {"min_age": timedelta(minutes=5), "order_timeout": timedelta(hours=1)}
    counts = await reconcile_pending(world.db, world.service.providers, world.clock.now(), **kw)
    assert counts.get("subscription_renewed") == 1, counts
    (m,) = await world.rows(Membership)
    assert aware(m.expires_at) >= aware(before.expires_at) + timedelta(days=29)
    assert (m.status, m.provider_subscription_id) == ("active", first["telegram_payment_charge_id"])
    await world.wait_text(BUYER, "now runs until")

    # Once: another pass, and the lost update arriving after all, change nothing.
    again = await reconcile_pending(world.db, world.service.providers, world.clock.now(), **kw)
    assert not any(k.startswith("subscription_") for k in again), again
    await world.tg.resend_payment(lost["telegram_payment_charge_id"])
    await settled(world)
    assert [p.provider_payment_id for p in await charges(world)] == [
        first["telegram_payment_charge_id"],
        lost["telegram_payment_charge_id"],
    ]
    (event,) = await world.rows(
        WebhookEvent, col(WebhookEvent.event_id) == lost["telegram_payment_charge_id"]
    )
    assert (event.event_type, event.error) == ("reconcile.subscription_payment", None)


async def test_a_first_payment_arriving_after_a_renewal_is_the_orders_own_money(world: World):
    """The subscription's first successful_payment was lost and a renewal reached us first
    (it paid the order). When the first payment arrives after all, it is the order's own
    money and names the subscription (so /cancel and refunds can stop it), not a second
    payment to flag for refund."""
    await sub_shop(world)
    link = await stars_link(world)
    first = await world.tg.pay_invoice_link(BUYER, link, deliver=False)
    await world.tg.advance_clock(30 * DAY + 60)
    await settled(world)

    async def paid_by_the_renewal() -> bool:
        return len(await charges(world)) == 1

    await world.eventually(paid_by_the_renewal)
    await world.tg.resend_payment(first["telegram_payment_charge_id"])
    await settled(world)
    paid = await charges(world)
    assert len(paid) == 2 and not any(p.extra for p in paid)
    assert all(e.error is None for e in await world.rows(WebhookEvent))
    (m,) = await world.rows(Membership)
    assert (m.provider_subscription_id, m.auto_renew) == (first["telegram_payment_charge_id"], True)
    notices = await world.rows(Outbox, col(Outbox.kind) == "notify")
    assert not [n for n in notices if n.payload.get("key") == "owner_extra_twice"]
