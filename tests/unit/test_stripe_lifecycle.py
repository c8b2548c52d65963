"""Stripe recurring payments and reversals, end to end through billing.ingest: real signed
events, StripeProvider's verification and mapping, one transaction per event, outbox rows.
Events come duplicated and in either order; the outcome must not depend on it."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from billing.events import EventKind
from billing.ingest import ingest_webhook
from billing.providers.stripe_provider import StripeProvider
from storage.models import AuditLog, Membership, Order, Outbox, Payment, WebhookEvent
from tests.factories import make_order, make_shop
from tests.stripe_fixtures import (
    SECRET_KEY,
    WEBHOOK_SECRET,
    completed_session,
    dispute,
    new_id,
    paid_invoice,
    refunded_charge,
    signed,
    stripe_object,
    subscription,
)

SUB = "sub_1LifecycleTest000000000"


@pytest.fixture
def provider() -> StripeProvider:
    return StripeProvider(SECRET_KEY, WEBHOOK_SECRET)


def ts(dt: datetime) -> int:
    return int(dt.timestamp())


async def send(
    db, provider, event_type: str, obj: dict, now: datetime, *, event_id: str | None = None
) -> str:
    headers, body, _ = signed(event_type, obj, event_id=event_id)
    ack, outcome = await ingest_webhook(db, provider, headers, body, now)
    assert ack.status == 200, ack.body
    return outcome


async def count(db, model, *where) -> int:
    async with db.session() as s:
        return (await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one()


async def memberships(db) -> list[Membership]:
    async with db.session() as s:
        return list((await s.execute(select(Membership).order_by(col(Membership.id)))).scalars())


async def outbox(db) -> list[Outbox]:
    async with db.session() as s:
        return list((await s.execute(select(Outbox).order_by(col(Outbox.id)))).scalars())


def notes(rows: list[Outbox]) -> list[str]:
    return [r.payload["key"] for r in rows if r.kind == "notify"]


async def order_status(db, order) -> str:
    async with db.session() as s:
        return (await s.get(Order, order.id)).status


def sub_session(order, invoice: str = "in_1First", sub: str = SUB) -> dict:
    return completed_session(
        order.order_no,
        amount=order.amount_minor,
        mode="subscription",
        payment_intent=None,
        subscription=sub,
        invoice=invoice,
    )


def first_invoice(order, end: datetime, invoice: str = "in_1First", sub: str = SUB) -> dict:
    return paid_invoice(
        order.order_no,
        sub,
        amount=order.amount_minor,
        period_end=ts(end),
        id=invoice,
        billing_reason="subscription_create",
    )


def renewal_invoice(
    order, end: datetime, invoice: str | None = None, sub: str = SUB, order_no: str | None = "same"
) -> dict:
    return paid_invoice(
        order.order_no if order_no == "same" else order_no,
        sub,
        amount=order.amount_minor,
        period_end=ts(end),
        id=invoice or new_id("in"),
        billing_reason="subscription_cycle",
    )


async def subscribed(db, provider, now, *, policy: str = "revoke", groups: int = 1):
    """A paid Stripe subscription (session, then its first invoice) whose first period ends
    31 days from now (Stripe's calendar month; the plan says 30 days)."""
    shop = await make_shop(db, now, recurring=True, refund_policy=policy, groups=groups)
    order = await make_order(db, shop, now, provider="stripe")
    assert (
        await send(db, provider, "checkout.session.completed", sub_session(order), now) == "granted"
    )
    assert (
        await send(
            db, provider, "invoice.paid", first_invoice(order, now + timedelta(days=31)), now
        )
        == "already_paid"
    )
    return shop, order


async def one_time_paid(db, provider, now, *, policy: str = "revoke"):
    shop = await make_shop(db, now, refund_policy=policy)
    order = await make_order(db, shop, now, provider="stripe")
    session = completed_session(order.order_no, amount=order.amount_minor)
    assert await send(db, provider, "checkout.session.completed", session, now) == "granted"
    return shop, order, session["payment_intent"]


# -- renewals ---------------------------------------------------------------------------------


async def test_first_invoice_sets_the_period_end_without_an_extended_notice(db, provider, now):
    await subscribed(db, provider, now)
    (m,) = await memberships(db)
    assert m.expires_at == now + timedelta(days=31)
    assert m.provider_subscription_id == SUB and m.auto_renew is True
    assert [r.kind for r in await outbox(db)] == ["deliver_invite"]
    assert await count(db, Payment) == 1  # the session and its first invoice: one payment


async def test_renewal_extends_to_the_paid_period_end_and_tells_the_buyer(db, provider, now):
    _, order = await subscribed(db, provider, now)
    end = now + timedelta(days=62)
    later = now + timedelta(days=31)
    assert await send(db, provider, "invoice.paid", renewal_invoice(order, end), later) == "renewed"
    (m,) = await memberships(db)
    assert m.expires_at == end and m.status == "active"
    rows = await outbox(db)
    assert notes(rows) == ["access_extended"]
    assert rows[-1].payload["params"]["until"] == end.isoformat()
    assert await count(db, Payment, col(Payment.kind) == "charge") == 2
    async with db.session() as s:
        audit = [a.action for a in (await s.execute(select(AuditLog))).scalars()]
    assert "membership.extend" in audit


async def test_duplicate_renewal_extends_once(db, provider, now):
    _, order = await subscribed(db, provider, now)
    invoice = renewal_invoice(order, now + timedelta(days=62), invoice="in_1Renewal")
    assert await send(db, provider, "invoice.paid", invoice, now, event_id="evt_1Ren") == "renewed"
    # Stripe's redelivery (same event) and a second event for the same invoice.
    assert (
        await send(db, provider, "invoice.paid", invoice, now, event_id="evt_1Ren") == "duplicate"
    )
    assert await send(db, provider, "invoice.paid", invoice, now) == "already_paid"
    (m,) = await memberships(db)
    assert m.expires_at == now + timedelta(days=62)  # not 93
    assert notes(await outbox(db)) == ["access_extended"]
    assert await count(db, Payment) == 2


async def test_renewals_out_of_order_end_at_the_latest_period(db, provider, now):
    _, order = await subscribed(db, provider, now)
    third = renewal_invoice(order, now + timedelta(days=92))
    second = renewal_invoice(order, now + timedelta(days=62))
    assert await send(db, provider, "invoice.paid", third, now) == "renewed"
    assert await send(db, provider, "invoice.paid", second, now) == "already_paid"
    (m,) = await memberships(db)
    assert m.expires_at == now + timedelta(days=92)
    assert notes(await outbox(db)) == ["access_extended"]


@pytest.mark.parametrize("first", ["invoice", "session"])
async def test_first_invoice_and_session_in_either_order_grant_once(db, provider, now, first):
    shop = await make_shop(db, now, recurring=True)
    order = await make_order(db, shop, now, provider="stripe")
    events = [
        ("invoice.paid", first_invoice(order, now + timedelta(days=31))),
        ("checkout.session.completed", sub_session(order)),
    ]
    if first == "session":
        events.reverse()
    outcomes = [await send(db, provider, t, o, now) for t, o in events]
    assert outcomes == ["granted", "already_paid"]
    (m,) = await memberships(db)
    assert m.expires_at == now + timedelta(days=31)
    assert (m.provider_subscription_id, m.auto_renew) == (SUB, True)
    assert [r.kind for r in await outbox(db)] == ["deliver_invite"]
    assert await count(db, Payment) == 1
    assert await order_status(db, order) == "paid"


async def test_first_invoice_with_the_wrong_amount_is_a_mismatch(db, provider, now):
    shop = await make_shop(db, now, recurring=True)
    order = await make_order(db, shop, now, provider="stripe")
    invoice = paid_invoice(order.order_no, SUB, amount=100, billing_reason="subscription_create")
    assert await send(db, provider, "invoice.paid", invoice, now) == "mismatch"
    assert await count(db, Membership) == 0
    assert await order_status(db, order) == "failed"


async def test_renewal_found_through_the_subscription_without_metadata(db, provider, now):
    _, order = await subscribed(db, provider, now)
    invoice = renewal_invoice(order, now + timedelta(days=62), order_no=None)
    assert await send(db, provider, "invoice.paid", invoice, now) == "renewed"
    (m,) = await memberships(db)
    assert m.expires_at == now + timedelta(days=62)


async def test_renewal_extends_every_group_of_a_bundle(db, provider, now):
    _, order = await subscribed(db, provider, now, groups=2)
    assert (
        await send(
            db, provider, "invoice.paid", renewal_invoice(order, now + timedelta(days=62)), now
        )
        == "renewed"
    )
    ms = await memberships(db)
    assert len(ms) == 2 and all(m.expires_at == now + timedelta(days=62) for m in ms)
    assert notes(await outbox(db)) == ["access_extended", "access_extended"]


async def test_renewal_after_lapse_brings_access_back_with_an_invite(db, provider, now):
    _, order = await subscribed(db, provider, now)
    async with db.transaction() as s:
        m = (await s.execute(select(Membership))).scalar_one()
        m.status = "expired"  # the lapse job removed them after a failed payment
    later = now + timedelta(days=40)
    assert (
        await send(
            db, provider, "invoice.paid", renewal_invoice(order, now + timedelta(days=62)), later
        )
        == "renewed"
    )
    (m,) = await memberships(db)
    assert m.status == "active" and m.starts_at == later
    assert m.expires_at == now + timedelta(days=62)
    assert [r.kind for r in await outbox(db)] == ["deliver_invite", "deliver_invite"]


async def test_renewal_never_reinstates_revoked_access(db, provider, now):
    _, order = await subscribed(db, provider, now)
    async with db.transaction() as s:
        (await s.execute(select(Membership))).scalar_one().status = "revoked"
    assert (
        await send(
            db, provider, "invoice.paid", renewal_invoice(order, now + timedelta(days=62)), now
        )
        == "no_membership"
    )
    (m,) = await memberships(db)
    assert m.status == "revoked"
    assert await count(db, Payment) == 2  # the money is on record all the same


async def test_renewal_for_an_unknown_subscription_is_recorded(db, provider, now):
    invoice = paid_invoice(None, "sub_1Nobody", billing_reason="subscription_cycle")
    assert await send(db, provider, "invoice.paid", invoice, now) == "unknown_order"
    async with db.session() as s:
        assert (await s.execute(select(WebhookEvent))).scalar_one().error == "unknown_order"


# -- failed payments and subscription state --------------------------------------------------


async def test_payment_failed_tells_the_buyer_with_a_link_and_keeps_access(db, provider, now):
    _, order = await subscribed(db, provider, now)
    url = "https://invoice.stripe.com/i/acct_1Test/test_YWNjdF8xVGVzdA"
    invoice = renewal_invoice(order, now + timedelta(days=62))
    invoice.update(amount_paid=0, status="open", hosted_invoice_url=url)
    assert await send(db, provider, "invoice.payment_failed", invoice, now) == "notified"
    (m,) = await memberships(db)
    assert m.status == "active" and m.expires_at == now + timedelta(days=31)
    row = (await outbox(db))[-1]
    assert row.payload["key"] == "renewal_payment_failed"
    assert row.payload["params"]["link"] == url
    assert row.payload["params"]["amount"] == "4.99 USD"
    assert row.payload["buttons"] == [{"text_key": "btn_fix_payment", "url": url}]


async def test_delayed_checkout_payment_failure_fails_the_order(db, provider, now):
    shop = await make_shop(db, now)
    order = await make_order(db, shop, now, provider="stripe")
    session = completed_session(order.order_no, payment_status="unpaid")
    assert (
        await send(db, provider, "checkout.session.async_payment_failed", session, now)
        == "notified"
    )
    assert await order_status(db, order) == "failed"
    assert notes(await outbox(db)) == ["payment_failed"]
    assert await count(db, Membership) == 0


async def test_subscription_updates_track_auto_renew_and_keep_access(db, provider, now):
    await subscribed(db, provider, now)
    far = ts(now + timedelta(days=400))

    async def state() -> tuple[bool, str, datetime]:
        (m,) = await memberships(db)
        return m.auto_renew, m.status, m.expires_at

    end = now + timedelta(days=31)
    sub = subscription("x", period_end=far, id=SUB, cancel_at_period_end=True)
    assert await send(db, provider, "customer.subscription.updated", sub, now) == "updated"
    assert await state() == (False, "active", end)  # never lengthened by the subscription
    sub = subscription("x", period_end=far, id=SUB, cancel_at_period_end=False)
    assert await send(db, provider, "customer.subscription.updated", sub, now) == "updated"
    assert await state() == (True, "active", end)
    sub = subscription("x", period_end=ts(now), id=SUB, status="canceled")
    assert await send(db, provider, "customer.subscription.deleted", sub, now) == "updated"
    assert await state() == (False, "active", end)  # nor shortened: runs to the paid end
    async with db.session() as s:
        audit = [a.action for a in (await s.execute(select(AuditLog))).scalars()]
    assert audit.count("membership.auto_renew_off") == 2
    assert audit.count("membership.auto_renew_on") == 1


async def test_cancel_at_alone_counts_as_not_renewing(db, provider, now):
    await subscribed(db, provider, now)
    sub = subscription("x", id=SUB, cancel_at=ts(now + timedelta(days=31)))
    assert await send(db, provider, "customer.subscription.updated", sub, now) == "updated"
    (m,) = await memberships(db)
    assert m.auto_renew is False


async def test_subscription_event_before_any_grant_is_recorded(db, provider, now):
    sub = subscription("GPNOPE", id="sub_1NotYet")
    assert await send(db, provider, "customer.subscription.updated", sub, now) == "ignored"


# -- refunds and disputes --------------------------------------------------------------------


@pytest.mark.parametrize("with_order_no", [True, False])
async def test_full_refund_revokes_and_tells_owner(db, provider, now, with_order_no):
    shop, order, pi = await one_time_paid(db, provider, now)
    charge = refunded_charge(
        pi, amount=499, refunded=499, order_no=order.order_no if with_order_no else None
    )
    assert await send(db, provider, "charge.refunded", charge, now) == "revoked"
    (m,) = await memberships(db)
    assert m.status == "revoked" and m.auto_renew is False
    assert await order_status(db, order) == "refunded"
    rows = await outbox(db)
    kinds = [r.kind for r in rows]
    assert kinds.count("remove_member") == 1
    assert sorted(notes(rows)) == ["buyer_refund_ended", "owner_refund"]
    buyer_note = next(r for r in rows if r.payload.get("key") == "buyer_refund_ended")
    assert buyer_note.payload["user_id"] == shop.buyer.platform_user_id
    assert buyer_note.payload["params"] == {
        "order_no": order.order_no,
        "amount": "4.99 USD",
        "plan": "Monthly",
        "groups": "Group 1",
    }
    owner_note = next(r for r in rows if r.kind == "notify" and r.payload["key"] == "owner_refund")
    assert owner_note.payload["user_id"] == shop.owner.platform_user_id
    assert owner_note.payload["params"]["order_no"] == order.order_no
    assert owner_note.payload["params"]["amount"] == "4.99 USD"
    async with db.session() as s:
        refund = (
            await s.execute(select(Payment).where(col(Payment.kind) == "refund"))
        ).scalar_one()
    assert (refund.amount_minor, refund.currency) == (499, "USD")
    # Stripe sends it again under a new event id: nothing more happens.
    assert await send(db, provider, "charge.refunded", charge, now) == "already_recorded"
    assert len(await outbox(db)) == len(rows)


async def test_refund_with_its_refund_object_is_recorded_under_the_refund_id(db, provider, now):
    _, order, pi = await one_time_paid(db, provider, now)
    charge = refunded_charge(pi, amount=499, refunded=499, order_no=order.order_no)
    refund = stripe_object(
        "refund", id="re_1Whole", amount=499, charge=charge["id"], payment_intent=pi
    )
    charge["refunds"]["data"] = [refund]
    assert await send(db, provider, "charge.refunded", charge, now) == "revoked"
    async with db.session() as s:
        row = (await s.execute(select(Payment).where(col(Payment.kind) == "refund"))).scalar_one()
    assert row.provider_payment_id == "re_1Whole"


async def test_refund_with_policy_keep_lets_access_run_out(db, provider, now):
    _, order = await subscribed(db, provider, now, policy="keep")
    charge = refunded_charge("pi_1KeepTest", amount=499, refunded=499, order_no=order.order_no)
    assert await send(db, provider, "charge.refunded", charge, now) == "kept"
    (m,) = await memberships(db)
    assert m.status == "active" and m.auto_renew is False
    assert m.expires_at == now + timedelta(days=31)
    rows = await outbox(db)
    assert "remove_member" not in [r.kind for r in rows]
    assert sorted(notes(rows)) == ["buyer_refund_kept", "owner_refund"]
    assert await order_status(db, order) == "refunded"


async def test_partial_refund_changes_no_access(db, provider, now):
    _, order, pi = await one_time_paid(db, provider, now)
    charge = refunded_charge(pi, amount=499, refunded=200, order_no=order.order_no)
    assert await send(db, provider, "charge.refunded", charge, now) == "partial_refund"
    (m,) = await memberships(db)
    assert m.status == "active"
    assert await order_status(db, order) == "paid"
    assert sorted(notes(await outbox(db))) == ["buyer_refund_partial", "owner_refund"]
    # The rest refunded later: now it is a full refund (299 more on record, not 499).
    charge = refunded_charge(pi, amount=499, refunded=499, order_no=order.order_no)
    assert await send(db, provider, "charge.refunded", charge, now) == "revoked"
    async with db.session() as s:
        amounts = sorted(
            (
                await s.execute(
                    select(col(Payment.amount_minor)).where(col(Payment.kind) == "refund")
                )
            ).scalars()
        )
    assert amounts == [200, 299]


async def test_dispute_revokes_at_once(db, provider, now):
    _, order, pi = await one_time_paid(db, provider, now)
    dp = dispute(pi, amount=499)
    assert await send(db, provider, "charge.dispute.created", dp, now) == "revoked"
    (m,) = await memberships(db)
    assert m.status == "revoked"
    rows = await outbox(db)
    assert sorted(notes(rows)) == ["access_revoked_dispute", "owner_dispute"]
    revoked = next(r for r in rows if r.payload.get("key") == "access_revoked_dispute")
    assert revoked.payload["params"]["order_no"] == order.order_no
    assert await order_status(db, order) == "paid"  # disputed, not refunded (yet)
    async with db.session() as s:
        row = (await s.execute(select(Payment).where(col(Payment.kind) == "dispute"))).scalar_one()
    assert row.provider_payment_id == dp["id"]


async def test_dispute_with_policy_keep(db, provider, now):
    _, _, pi = await one_time_paid(db, provider, now, policy="keep")
    assert (
        await send(db, provider, "charge.dispute.created", dispute(pi, amount=499), now) == "kept"
    )
    (m,) = await memberships(db)
    assert m.status == "active"


async def test_refund_before_the_payment_never_grants(db, provider, now):
    shop = await make_shop(db, now)
    order = await make_order(db, shop, now, provider="stripe")
    session = completed_session(order.order_no, amount=order.amount_minor)
    charge = refunded_charge(
        session["payment_intent"], amount=499, refunded=499, order_no=order.order_no
    )
    assert await send(db, provider, "charge.refunded", charge, now) == "recorded"
    assert await order_status(db, order) == "refunded"
    assert await send(db, provider, "checkout.session.completed", session, now) == "reversed"
    assert await count(db, Membership) == 0
    assert "deliver_invite" not in [r.kind for r in await outbox(db)]
    assert await order_status(db, order) == "refunded"
    async with db.session() as s:
        kinds = sorted((await s.execute(select(col(Payment.kind)))).scalars())
        ev = (
            await s.execute(
                select(WebhookEvent).where(
                    col(WebhookEvent.event_type) == "checkout.session.completed"
                )
            )
        ).scalar_one()
    assert kinds == ["charge", "refund"]
    assert ev.error == "reversed"


async def test_refund_before_a_subscriptions_first_invoice_never_grants(db, provider, now):
    shop = await make_shop(db, now, recurring=True)
    order = await make_order(db, shop, now, provider="stripe")
    charge = refunded_charge("pi_1Early", amount=499, refunded=499, order_no=order.order_no)
    assert await send(db, provider, "charge.refunded", charge, now) == "recorded"
    assert (
        await send(
            db, provider, "invoice.paid", first_invoice(order, now + timedelta(days=31)), now
        )
        == "reversed"
    )
    assert (
        await send(db, provider, "checkout.session.completed", sub_session(order), now)
        == "reversed"
    )
    assert await count(db, Membership) == 0


async def test_dispute_before_the_payment_never_grants(db, provider, now):
    shop = await make_shop(db, now)
    order = await make_order(db, shop, now, provider="stripe")
    session = completed_session(order.order_no, amount=order.amount_minor)
    dp = dispute(session["payment_intent"], amount=499, metadata={"order_no": order.order_no})
    assert await send(db, provider, "charge.dispute.created", dp, now) == "recorded"
    assert await send(db, provider, "checkout.session.completed", session, now) == "reversed"
    assert await count(db, Membership) == 0
    assert await order_status(db, order) == "failed"


async def test_mapping_of_the_new_fields(provider):
    inv = paid_invoice(
        "GP-1", hosted_invoice_url="https://pay.example/x", billing_reason="subscription_create"
    )
    headers, body, _ = signed("invoice.payment_failed", inv)
    ev = provider.parse_webhook(headers, body).event
    assert ev is not None and ev.kind is EventKind.PAYMENT_FAILED
    assert (ev.action_url, ev.first_period) == ("https://pay.example/x", True)
    headers, body, _ = signed(
        "customer.subscription.updated", subscription("GP-1", cancel_at_period_end=True)
    )
    ev = provider.parse_webhook(headers, body).event
    assert ev is not None and ev.cancel_at_period_end is True
    charge = refunded_charge("pi_1X", amount=499, refunded=200)
    headers, body, _ = signed("charge.refunded", charge)
    ev = provider.parse_webhook(headers, body).event
    assert ev is not None
    assert ev.reversal_id == f"{charge['id']}:refunded:200"
    assert (ev.amount_minor, ev.payment_amount_minor, ev.reversal_amount_minor) == (200, 499, None)
    assert charge["id"] in ev.payment_refs
    dp = dispute("pi_1X", charge="ch_1Y", amount=499)
    headers, body, _ = signed("charge.dispute.created", dp)
    ev = provider.parse_webhook(headers, body).event
    assert ev is not None and (ev.reversal_id, ev.payment_refs) == (dp["id"], ("ch_1Y",))
