"""The owner's /refund <order> (billing/order_refunds.py) against the local Stripe host: who
may ask, what is refunded, every state an order can be in, one request at a time, and the
outbox call and webhook that follow."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col

from billing.ingest import process_notice
from billing.order_refunds import request_order_refund
from billing.stars import StarsPayment, complete, payment_notice, refund_notice
from membership.errors import RuleError
from storage.models import AuditLog, Membership, Order, Outbox, Payment, User
from storage.money import Money
from storage.queries import get_or_create_user
from tests.factories import (
    deliver_stripe_event,
    make_order,
    make_shop,
    paid_subscription,
    start_order,
    stripe_events,
)
from tests.unit.test_ledger_rules import notes, rows, run_refunds

STRIPE = {"stripe"}


async def paid_at_the_host(db, fake, stripe, now, **shop):
    """An order bought and paid through the local Stripe host, its webhook delivered."""
    made = await make_shop(db, now, **shop)
    order = await start_order(db, stripe, made, now)
    await fake.pay(order.provider_ref)
    (paid,) = stripe_events(fake, "checkout.session.completed")
    assert await deliver_stripe_event(db, stripe, paid, now) == "granted"
    return made, order


async def ask(db, user, order_no, now, *, refundable=STRIPE, admin_ids=()):
    async with db.transaction() as s:
        actor = await s.get(User, user.id)
        return await request_order_refund(
            s, actor, order_no, now, refundable=refundable, admin_ids=admin_ids
        )


async def refused(db, user, order_no, now, **kw) -> RuleError:
    with pytest.raises(RuleError) as e:
        await ask(db, user, order_no, now, **kw)
    return e.value


async def refund_calls(db) -> list[Outbox]:
    return await rows(db, Outbox, col(Outbox.kind) == "refund_payment")


async def test_owner_asks_once_and_the_outbox_row_names_the_charge(db, fake, stripe, now):
    shop, order = await paid_at_the_host(db, fake, stripe, now)
    asked = await ask(db, shop.owner, order.order_no, now)
    assert (asked.order_no, asked.money, asked.provider, asked.calls) == (
        order.order_no,
        Money(499, "USD"),
        "stripe",
        1,
    )
    (row,) = await refund_calls(db)
    (charge,) = await rows(db, Payment, col(Payment.kind) == "charge")
    assert row.platform == "stripe"
    assert row.payload == {
        "provider": "stripe",
        "payment_row_id": charge.id,
        "payment_id": charge.provider_payment_id,
        "amount_minor": 499,
        "currency": "USD",
        "order_no": order.order_no,
        "buyer_ref": shop.buyer.platform_user_id,
        "reason": "requested_by_customer",
        "idempotency_key": f"gatepass-refund-order-stripe-{order.order_no}-1",
        "owner": {"user_id": "1000", "platform": "telegram", "language": None},
    }
    assert charge.refund_requested_at == now
    (audit,) = await rows(db, AuditLog, col(AuditLog.action) == "order.refund_requested")
    assert audit.actor == f"user:{shop.owner.id}" and audit.target == f"order:{order.order_no}"
    # Asked again while in flight: reported, nothing more queued.
    again = await refused(db, shop.owner, order.order_no, now)
    assert (again.key, again.params) == (
        "order_refund_already_requested",
        {"order_no": order.order_no},
    )
    assert len(await refund_calls(db)) == 1


async def test_only_the_plans_owner_or_an_admin_may_ask_others_hear_unknown(db, fake, stripe, now):
    shop, order = await paid_at_the_host(db, fake, stripe, now)
    async with db.transaction() as s:
        stranger = await get_or_create_user(s, "telegram", "555", now)
        other_owner = await get_or_create_user(s, "telegram", "556", now)
    for who in (stranger, shop.buyer, other_owner):
        e = await refused(db, who, order.order_no, now)
        assert (e.key, e.params) == ("order_refund_unknown", {"order_no": order.order_no})
    e = await refused(db, shop.owner, "GPNOSUCHORDER", now)
    assert (e.key, e.params) == ("order_refund_unknown", {"order_no": "GPNOSUCHORDER"})
    assert await refund_calls(db) == []
    # A configured admin manages every group, as its owner would.
    asked = await ask(db, stranger, order.order_no, now, admin_ids=[555])
    assert asked.money == Money(499, "USD")
    (row,) = await refund_calls(db)
    assert row.payload["owner"]["user_id"] == "555"  # a refusal is told to who asked


@pytest.mark.parametrize("status", ["pending", "expired", "cancelled", "failed"])
async def test_an_order_not_paid_has_nothing_to_refund(db, now, status):
    shop = await make_shop(db, now)
    order = await make_order(db, shop, now, provider="stripe")
    async with db.transaction() as s:
        await s.execute(update(Order).where(col(Order.id) == order.id).values(status=status))
    e = await refused(db, shop.owner, order.order_no, now)
    assert (e.key, e.params) == (
        "order_refund_not_paid",
        {"order_no": order.order_no, "status": status},
    )
    assert await refund_calls(db) == []


async def test_a_provider_without_a_refund_api_is_refunded_by_hand(db, fake, stripe, now):
    shop, order = await paid_at_the_host(db, fake, stripe, now)
    e = await refused(db, shop.owner, order.order_no, now, refundable=set())
    assert (e.key, e.params) == (
        "refund_by_hand",
        {"provider": "stripe", "amount": "4.99 USD", "order_no": order.order_no},
    )
    (charge,) = await rows(db, Payment, col(Payment.kind) == "charge")
    assert charge.refund_requested_at is None and await refund_calls(db) == []


async def test_refund_lands_revokes_and_tells_buyer_and_owner_then_already_refunded(
    db, fake, stripe, now
):
    shop, order = await paid_at_the_host(db, fake, stripe, now)
    await ask(db, shop.owner, order.order_no, now)
    (row,) = await run_refunds(db, stripe, now)
    assert row.status == "done"
    await fake.settle()
    (refunded,) = stripe_events(fake, "charge.refunded")
    assert await deliver_stripe_event(db, stripe, refunded, now) == "revoked"
    (m,) = await rows(db, Membership)
    assert m.status == "revoked"
    (o,) = await rows(db, Order)
    assert o.status == "refunded"
    outbox = await rows(db, Outbox)
    assert "remove_member" in [r.kind for r in outbox]
    assert sorted(notes(outbox)) == ["buyer_refund_ended", "owner_refund"]
    e = await refused(db, shop.owner, order.order_no, now)
    assert (e.key, e.params) == (
        "order_refund_already_done",
        {"order_no": order.order_no, "amount": "4.99 USD"},
    )
    assert len(await refund_calls(db)) == 1 and len(fake.refunds) == 1


async def test_what_is_left_after_a_partial_refund_is_refunded(db, fake, stripe, now):
    shop, order = await paid_at_the_host(db, fake, stripe, now)
    await fake.refund(order.provider_ref, 200)  # by hand in the dashboard; webhook lost
    (partial,) = stripe_events(fake, "charge.refunded")
    assert await deliver_stripe_event(db, stripe, partial, now) == "partial_refund"
    asked = await ask(db, shop.owner, order.order_no, now)
    assert asked.money == Money(299, "USD")
    (row,) = await run_refunds(db, stripe, now)
    assert row.status == "done" and row.payload["amount_minor"] == 299
    await fake.settle()
    rest = stripe_events(fake, "charge.refunded")[-1]
    assert await deliver_stripe_event(db, stripe, rest, now) == "revoked"


async def test_a_disputed_order_has_nothing_left(db, fake, stripe, now):
    shop, order = await paid_at_the_host(db, fake, stripe, now)
    await fake.dispute(order.provider_ref)
    (opened,) = stripe_events(fake, "charge.dispute.created")
    assert await deliver_stripe_event(db, stripe, opened, now) == "revoked"
    e = await refused(db, shop.owner, order.order_no, now)
    assert (e.key, e.params) == ("order_refund_disputed", {"order_no": order.order_no})


async def test_a_refusal_tells_who_asked_and_a_new_request_has_a_new_key(db, fake, stripe, now):
    shop, order = await paid_at_the_host(db, fake, stripe, now)
    # The bank disputed the charge and the webhook has not reached us: Stripe refuses (400).
    await fake.dispute(order.provider_ref)
    await ask(db, shop.owner, order.order_no, now)
    (row,) = await run_refunds(db, stripe, now)
    assert row.status == "failed" and "charged back" in row.last_error
    (charge,) = await rows(db, Payment, col(Payment.kind) == "charge")
    assert charge.refund_requested_at is None
    told = [r for r in await rows(db, Outbox) if r.payload.get("key") == "owner_refund_failed"]
    assert [r.payload["user_id"] for r in told] == [shop.owner.platform_user_id]
    # Asked again: a new request, with a key of its own (Stripe replays a key's refusal).
    await ask(db, shop.owner, order.order_no, now + timedelta(minutes=1))
    first, second = await refund_calls(db)
    assert second.status == "pending"
    assert second.payload["idempotency_key"] == f"gatepass-refund-order-stripe-{order.order_no}-2"
    assert first.payload["idempotency_key"] != second.payload["idempotency_key"]


async def test_two_requests_at_once_queue_one_refund(db, fake, stripe, now):
    shop, order = await paid_at_the_host(db, fake, stripe, now)
    results = await asyncio.gather(
        *(ask(db, shop.owner, order.order_no, now) for _ in range(4)), return_exceptions=True
    )
    ok = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(ok) == 1
    assert all(
        isinstance(e, RuleError) and e.key == "order_refund_already_requested" for e in errors
    ), errors
    assert len(await refund_calls(db)) == 1
    assert len(await rows(db, AuditLog, col(AuditLog.action) == "order.refund_requested")) == 1


async def test_a_subscriptions_refund_stops_its_renewal(db, fake, stripe, now):
    shop, order, sub = await paid_subscription(db, fake, stripe, now)
    await ask(db, shop.owner, order.order_no, now)
    (row,) = await run_refunds(db, stripe, now)
    assert row.status == "done" and row.payload["payment_id"].startswith("in_")
    await fake.settle()
    (refunded,) = stripe_events(fake, "charge.refunded")
    assert await deliver_stripe_event(db, stripe, refunded, now) == "revoked"
    stops = await rows(db, Outbox, col(Outbox.kind) == "stop_renewal")
    assert [r.payload for r in stops] == [
        {"provider": "stripe", "subscription_id": sub, "buyer_ref": shop.buyer.platform_user_id}
    ]
    (m,) = await rows(db, Membership)
    assert (m.status, m.auto_renew) == ("revoked", False)


async def test_every_renewal_of_a_subscription_is_refunded(db, fake, stripe, now):
    shop, order, sub = await paid_subscription(db, fake, stripe, now, refund_policy="keep")
    await fake.advance_period(sub)
    renewal = stripe_events(fake, "invoice.paid")[-1]
    assert await deliver_stripe_event(db, stripe, renewal, now) == "renewed"
    asked = await ask(db, shop.owner, order.order_no, now)
    assert (asked.money, asked.calls) == (Money(998, "USD"), 2)
    first, second = await run_refunds(db, stripe, now)
    assert (first.status, second.status) == ("done", "done")
    assert first.payload["payment_id"] != second.payload["payment_id"]
    assert {first.payload["idempotency_key"], second.payload["idempotency_key"]} == {
        f"gatepass-refund-order-stripe-{order.order_no}-1-1",
        f"gatepass-refund-order-stripe-{order.order_no}-1-2",
    }
    await fake.settle()
    outcomes = [
        await deliver_stripe_event(db, stripe, e, now)
        for e in stripe_events(fake, "charge.refunded")
    ]
    assert outcomes[0] == "kept"
    (m,) = await rows(db, Membership)
    assert (m.status, m.auto_renew) == ("active", False)
    assert [
        r.payload["subscription_id"]
        for r in await rows(db, Outbox, col(Outbox.kind) == "stop_renewal")
    ] == [sub]
    e = await refused(db, shop.owner, order.order_no, now)
    assert (e.key, e.params) == (
        "order_refund_already_done",
        {"order_no": order.order_no, "amount": "9.98 USD"},
    )


async def test_a_stars_subscription_refunds_the_charge_telegram_did_not_refund(db, now):
    """Telegram refunded the subscription's first payment by itself; the owner's /refund then
    asks for the renewal, the charge that still holds the money (refundStarPayment of the
    first one would answer CHARGE_ALREADY_REFUNDED and return nothing)."""
    shop = await make_shop(db, now, prices=(Money(250, "XTR"),), recurring=True)
    order = await make_order(db, shop, now, provider="stars", price=Money(250, "XTR"))
    exp = now + timedelta(days=30)
    first = payment_notice(StarsPayment("stxtA", order.order_no, 250, "XTR", True, True, exp))
    assert (await process_notice(db, "stars", first, now)).outcome.value == "granted"
    renewal = payment_notice(
        StarsPayment("stxtB", order.order_no, 250, "XTR", True, False, exp + timedelta(days=30))
    )
    async with db.session() as s:
        renewal = await complete(s, renewal)
    assert (await process_notice(db, "stars", renewal, now)).outcome.value == "renewed"
    back = refund_notice("stxtA", order.order_no, 250, "XTR")
    assert (await process_notice(db, "stars", back, now)).outcome.value == "revoked"
    asked = await ask(db, shop.owner, order.order_no, now, refundable={"stars"})
    assert (asked.money, asked.calls) == (Money(250, "XTR"), 1)
    (row,) = await refund_calls(db)
    assert (row.payload["payment_id"], row.payload["amount_minor"]) == ("stxtB", 250)
    assert row.payload["buyer_ref"] == shop.buyer.platform_user_id
