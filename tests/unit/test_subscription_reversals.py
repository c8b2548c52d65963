"""A refund or dispute of a subscription's payment, against the local Stripe host over HTTP:
the charge names neither order nor invoice, so the provider asks Stripe which invoice it
paid; access ends (or runs out, by policy) and Stripe is told to stop charging for it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlmodel import col

from billing.ingest import ingest_webhook
from billing.providers.stripe_provider import StripeProvider
from scheduler.outbox import OutboxWorker
from storage.models import Membership, Outbox, User
from tests.factories import deliver_stripe_event, paid_subscription, stripe_events
from tests.stripe_fixtures import SECRET_KEY, WEBHOOK_SECRET, event_body, sign_payload

# `fake` (the local Stripe host, no webhook_url) and `stripe`: tests/unit/conftest.py


async def subscribed(db, fake, stripe, now, *, policy: str = "revoke"):
    _shop, order, sub_id = await paid_subscription(db, fake, stripe, now, refund_policy=policy)
    return order, sub_id


async def rows(db, model, *where):
    async with db.session() as s:
        return list((await s.execute(select(model).where(*where).order_by(model.id))).scalars())


class NoChats:
    platform = "telegram"


async def run_provider_calls(db, stripe, now) -> OutboxWorker:
    worker = OutboxWorker(
        db,
        {"telegram": NoChats()},
        _Clock(now),
        invite_ttl=timedelta(hours=1),
        providers={"stripe": stripe},
    )
    for row in await rows(db, Outbox, col(Outbox.kind) == "stop_renewal"):
        await worker._process(_claimed(row))
    return worker


class _Clock:
    def __init__(self, now):
        self.t = now

    def now(self):
        return self.t


def _claimed(row: Outbox):
    from storage.outbox import ClaimedRow

    return ClaimedRow(row.id, row.kind, row.platform, row.payload, row.attempts)


@pytest.mark.parametrize("reversal", ["refund", "dispute"])
async def test_a_subscription_reversal_revokes_and_stops_the_subscription(
    db, fake, stripe, now, reversal
):
    order, sub_id = await subscribed(db, fake, stripe, now)
    await (
        fake.refund(order.provider_ref)
        if reversal == "refund"
        else fake.dispute(order.provider_ref)
    )
    (event,) = stripe_events(
        fake, "charge.refunded" if reversal == "refund" else "charge.dispute.created"
    )
    assert "invoice" not in event["data"]["object"] or not event["data"]["object"]["invoice"]
    assert await deliver_stripe_event(db, stripe, event, now) == "revoked"
    lookups = [r for r in fake.requests if r.path == "/v1/invoice_payments"]
    assert [r.params["payment"]["payment_intent"] for r in lookups] == [
        event["data"]["object"]["payment_intent"]
    ]
    (m,) = await rows(db, Membership)
    assert (m.status, m.auto_renew) == ("revoked", False)
    (stop,) = await rows(db, Outbox, col(Outbox.kind) == "stop_renewal")
    (buyer,) = await rows(db, User, col(User.id) == order.user_id)
    assert (stop.platform, stop.payload) == (
        "stripe",
        {"provider": "stripe", "subscription_id": sub_id, "buyer_ref": buyer.platform_user_id},
    )
    assert fake.subscriptions[sub_id]["cancel_at_period_end"] is False
    await run_provider_calls(db, stripe, now)
    assert fake.subscriptions[sub_id]["cancel_at_period_end"] is True
    (stop,) = await rows(db, Outbox, col(Outbox.kind) == "stop_renewal")
    assert stop.status == "done"
    # Stripe's notice of the change, and the same reversal again: nothing more.
    await fake.settle()
    (updated,) = stripe_events(fake, "customer.subscription.updated")
    await deliver_stripe_event(db, stripe, updated, now)
    assert await deliver_stripe_event(db, stripe, event, now) == "duplicate"
    assert len(await rows(db, Outbox, col(Outbox.kind) == "stop_renewal")) == 1


async def test_policy_keep_lets_access_run_out_but_stops_the_charges(db, fake, stripe, now):
    order, sub_id = await subscribed(db, fake, stripe, now, policy="keep")
    await fake.refund(order.provider_ref)
    (event,) = stripe_events(fake, "charge.refunded")
    assert await deliver_stripe_event(db, stripe, event, now) == "kept"
    (m,) = await rows(db, Membership)
    assert (m.status, m.auto_renew) == ("active", False)
    await run_provider_calls(db, stripe, now)
    assert fake.subscriptions[sub_id]["cancel_at_period_end"] is True


async def test_a_failed_lookup_asks_stripe_to_send_again(db, fake, now):
    order_stripe = StripeProvider(SECRET_KEY, WEBHOOK_SECRET, api_base=fake.base_url)
    try:
        order, _ = await subscribed(db, fake, order_stripe, now)
        await fake.refund(order.provider_ref)
        (event,) = stripe_events(fake, "charge.refunded")
    finally:
        await order_stripe.close()
    down = StripeProvider(SECRET_KEY, WEBHOOK_SECRET, api_base="http://127.0.0.1:9")
    try:
        body = event_body(event)
        ack, outcome = await ingest_webhook(
            db, down, {"Stripe-Signature": sign_payload(body, WEBHOOK_SECRET)}, body, now
        )
    finally:
        await down.close()
    assert (ack.status, outcome) == (500, "error")
    (m,) = await rows(db, Membership)
    assert m.status == "active"  # nothing happened: the retry will do it
