"""Flow 6: reconciliation against the local Stripe host over real HTTP (and the sandbox
provider): a missed webhook still grants, exactly once; timed-out orders are closed at the
provider; a late payment is honoured; two replicas grant once."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from billing.ingest import ingest_webhook
from billing.providers.sandbox_provider import SandboxProvider
from billing.reconcile import reconcile_pending
from sandbox.stripe_host import FakeStripe
from storage.db import Database
from storage.models import AuditLog, Membership, Order, Outbox, Payment, WebhookEvent
from storage.queries import get_or_create_user
from tests.factories import (
    SANDBOX_SECRET,
    deliver_stripe_event,
    make_order,
    make_shop,
    start_order,
    stripe_events,
)
from tests.stripe_fixtures import completed_session, signed

MIN_AGE = timedelta(minutes=5)
TIMEOUT = timedelta(hours=1)


# `fake` (the local Stripe host, no webhook_url) and `stripe`: tests/unit/conftest.py


async def run(db, stripe, at, **kw) -> dict[str, int]:
    kw = {"min_age": MIN_AGE, "order_timeout": TIMEOUT, "limit": 50, **kw}
    return await reconcile_pending(db, {"stripe": stripe}, at, **kw)


async def count(db, model, *where) -> int:
    async with db.session() as s:
        return (await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one()


async def status_of(db, order) -> str:
    async with db.session() as s:
        return (await s.get(Order, order.id)).status


def api_calls(fake: FakeStripe) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in fake.requests]


async def test_missed_webhook_is_granted_once_even_when_it_arrives_later(db, fake, stripe, now):
    shop = await make_shop(db, now)
    order = await start_order(db, stripe, shop, now)
    await fake.pay(order.provider_ref)  # paid at Stripe; the webhook never reached us
    woken: list[int] = []
    counts = await run(db, stripe, now + timedelta(minutes=10), on_commit=lambda: woken.append(1))
    assert (counts["claimed"], counts["granted"]) == (1, 1) and woken == [1]
    assert await status_of(db, order) == "paid"
    reconciled = col(WebhookEvent.event_id) == f"reconcile:{order.order_no}"
    assert await count(db, WebhookEvent, reconciled) == 1
    # Stripe's retry of the lost webhook arrives after all: nothing more happens.
    (completed,) = stripe_events(fake, "checkout.session.completed")
    assert (
        await deliver_stripe_event(db, stripe, completed, now + timedelta(minutes=11))
        == "already_paid"
    )
    assert await count(db, Membership) == 1
    assert await count(db, Payment) == 1  # same payment id from reconcile and webhook
    assert await count(db, Outbox, col(Outbox.kind) == "deliver_invite") == 1
    assert (await run(db, stripe, now + timedelta(minutes=30)))["claimed"] == 0


async def test_webhook_first_then_reconcile_finds_nothing_pending(db, fake, stripe, now):
    shop = await make_shop(db, now)
    order = await start_order(db, stripe, shop, now)
    await fake.pay(order.provider_ref)
    (completed,) = stripe_events(fake, "checkout.session.completed")
    assert await deliver_stripe_event(db, stripe, completed, now) == "granted"
    assert (await run(db, stripe, now + timedelta(minutes=10)))["claimed"] == 0


async def test_young_orders_are_left_alone(db, fake, stripe, now):
    shop = await make_shop(db, now)
    await start_order(db, stripe, shop, now)
    calls = len(fake.requests)
    assert (await run(db, stripe, now + timedelta(minutes=1)))["claimed"] == 0
    assert len(fake.requests) == calls


async def test_open_checkout_stays_pending_and_is_asked_again_only_after_recheck(
    db, fake, stripe, now
):
    shop = await make_shop(db, now)
    order = await start_order(db, stripe, shop, now)
    at = now + timedelta(minutes=10)
    assert (await run(db, stripe, at))["open"] == 1
    assert await status_of(db, order) == "pending"
    assert (await run(db, stripe, at + timedelta(minutes=1)))["claimed"] == 0  # leased
    assert (await run(db, stripe, at + MIN_AGE))["open"] == 1
    gets = [c for c in api_calls(fake) if c[0] == "GET"]
    assert gets == [("GET", f"/v1/checkout/sessions/{order.provider_ref}")] * 2


async def test_timed_out_order_is_closed_at_stripe_and_expired(db, fake, stripe, now):
    shop = await make_shop(db, now)
    order = await start_order(db, stripe, shop, now)
    counts = await run(db, stripe, now + TIMEOUT + timedelta(minutes=1))
    assert counts["expired"] == 1
    assert ("POST", f"/v1/checkout/sessions/{order.provider_ref}/expire") in api_calls(fake)
    assert fake.sessions[order.provider_ref]["status"] == "expired"
    assert await status_of(db, order) == "expired"
    async with db.session() as s:
        assert "order.expired" in [a.action for a in (await s.execute(select(AuditLog))).scalars()]
    with pytest.raises(ValueError, match="expired"):
        await fake.pay(order.provider_ref)  # the buyer can no longer pay it


async def test_order_paid_just_before_its_close_is_granted(db, fake, stripe, now):
    shop = await make_shop(db, now)
    order = await start_order(db, stripe, shop, now)
    await fake.pay(order.provider_ref)
    counts = await run(db, stripe, now + TIMEOUT + timedelta(minutes=1))
    assert (counts["granted"], counts["expired"]) == (1, 0)
    assert await status_of(db, order) == "paid"
    assert await count(db, Membership) == 1


async def test_session_expired_at_stripe_is_expired_here(db, fake, stripe, now):
    shop = await make_shop(db, now)
    order = await start_order(db, stripe, shop, now)
    fake.sessions[order.provider_ref]["expires_at"] = int(now.timestamp())  # Stripe's own TTL
    assert (await run(db, stripe, now + timedelta(minutes=10)))["expired"] == 1
    assert await status_of(db, order) == "expired"


async def test_late_payment_on_a_closed_order_is_honoured(db, fake, stripe, now):
    shop = await make_shop(db, now)
    order = await start_order(db, stripe, shop, now)
    # A bank debit: the session completed, its money still in flight past our timeout.
    fake.sessions[order.provider_ref].update(status="complete", payment_status="unpaid")
    counts = await run(db, stripe, now + TIMEOUT + timedelta(minutes=1))
    assert counts["expired"] == 1 and await status_of(db, order) == "expired"
    session = completed_session(order.order_no, amount=499, id=order.provider_ref)
    headers, body, _ = signed("checkout.session.async_payment_succeeded", session)
    ack, outcome = await ingest_webhook(db, stripe, headers, body, now + timedelta(days=2))
    assert (ack.status, outcome) == (200, "granted")
    assert await status_of(db, order) == "paid"
    assert await count(db, Membership, col(Membership.status) == "active") == 1


async def test_provider_error_leaves_the_order_pending(db, fake, stripe, now):
    shop = await make_shop(db, now)
    order = await make_order(db, shop, now, provider="stripe")  # provider_ref Stripe never made
    counts = await run(db, stripe, now + timedelta(minutes=10))
    assert counts["errors"] == 1
    assert await status_of(db, order) == "pending"


async def test_an_order_its_provider_keeps_failing_on_is_expired_a_day_past_its_timeout(
    db, fake, stripe, now
):
    """Asked about at every sweep forever otherwise: a day past its timeout the checkout has
    stopped working at the provider anyway, and a late payment would still be honoured."""
    shop = await make_shop(db, now)
    order = await make_order(db, shop, now, provider="stripe")  # provider_ref Stripe never made
    counts = await run(db, stripe, now + TIMEOUT + timedelta(hours=23))
    assert (counts["errors"], counts["expired"]) == (1, 0)
    assert await status_of(db, order) == "pending"
    counts = await run(db, stripe, now + TIMEOUT + timedelta(days=1, minutes=1))
    assert (counts["errors"], counts["expired"]) == (1, 1)
    assert await status_of(db, order) == "expired"
    async with db.session() as s:
        (why,) = (
            await s.execute(
                select(col(AuditLog.detail)).where(col(AuditLog.action) == "order.expired")
            )
        ).scalars()
    assert "stripe still failing" in (why or "")


async def test_orders_without_a_provider_expire_only_by_time(db, stripe, fake, now):
    shop = await make_shop(db, now)
    order = await make_order(db, shop, now, provider="stars")
    assert (await run(db, stripe, now + timedelta(minutes=10)))["open"] == 1
    assert (await run(db, stripe, now + TIMEOUT))["expired"] == 1
    assert await status_of(db, order) == "expired"


async def test_sandbox_checkout_is_open_until_the_timeout(db, now):
    sandbox = SandboxProvider(SANDBOX_SECRET, "http://127.0.0.1:1")
    shop = await make_shop(db, now)
    order = await make_order(db, shop, now)
    kw = {"min_age": MIN_AGE, "order_timeout": TIMEOUT, "limit": 10}
    assert (await reconcile_pending(db, {"sandbox": sandbox}, now + timedelta(minutes=10), **kw))[
        "open"
    ] == 1
    assert (await reconcile_pending(db, {"sandbox": sandbox}, now + TIMEOUT, **kw))["expired"] == 1
    assert await status_of(db, order) == "expired"


async def test_subscription_checkout_reconciled_then_its_webhooks_change_nothing(
    db, fake, stripe, now
):
    shop = await make_shop(db, now, recurring=True)
    order = await start_order(db, stripe, shop, now)
    await fake.pay(order.provider_ref)
    assert (await run(db, stripe, now + timedelta(minutes=10)))["granted"] == 1
    async with db.session() as s:
        m = (await s.execute(select(Membership))).scalar_one()
    sub_id = fake.sessions[order.provider_ref]["subscription"]
    assert (m.provider_subscription_id, m.auto_renew) == (sub_id, True)
    (completed,) = stripe_events(fake, "checkout.session.completed")
    (invoice,) = stripe_events(fake, "invoice.paid")
    later = now + timedelta(minutes=11)
    assert await deliver_stripe_event(db, stripe, invoice, later) == "already_paid"
    assert await deliver_stripe_event(db, stripe, completed, later) == "already_paid"
    assert await count(db, Payment) == 1
    assert await count(db, Outbox, col(Outbox.kind) == "deliver_invite") == 1
    assert await count(db, Outbox, col(Outbox.kind) == "notify") == 0


@pytest.mark.parametrize("recheck", [None, timedelta(0)], ids=["leased", "no-lease"])
async def test_two_replicas_grant_each_missed_payment_once(db, db_url, fake, stripe, now, recheck):
    """Two reconcile runs at once (on PostgreSQL: two engines, like two replicas). With the
    lease they split the work; without it both may ask Stripe, and the dedupe on the
    reconcile event id and the order's compare-and-set still grant once."""
    shop = await make_shop(db, now)
    orders = []
    for i in range(6):
        async with db.transaction() as s:
            buyer = await get_or_create_user(s, "telegram", f"30{i}", now)
        orders.append(await start_order(db, stripe, dataclasses.replace(shop, buyer=buyer), now))
    for o in orders:
        await fake.pay(o.provider_ref)
    other = db if db.is_sqlite else Database(*db_url)
    try:
        at = now + timedelta(minutes=10)
        limit = 3 if recheck is None else 50  # leased: each run takes a batch of its own
        a, b = await asyncio.gather(
            run(db, stripe, at, recheck=recheck, limit=limit),
            run(other, stripe, at, recheck=recheck, limit=limit),
        )
    finally:
        if other is not db:
            await other.dispose()
    assert a["granted"] + b["granted"] == 6
    assert a["errors"] + b["errors"] == 0
    if recheck is None:  # SKIP LOCKED / the lease: no order was claimed twice
        assert (a["claimed"], b["claimed"]) == (3, 3)
    assert await count(db, Membership) == 6
    assert await count(db, Payment) == 6
    assert await count(db, Outbox, col(Outbox.kind) == "deliver_invite") == 6
    async with db.session() as s:
        paid = [a.action for a in (await s.execute(select(AuditLog))).scalars()]
    assert paid.count("order.paid") == 6
