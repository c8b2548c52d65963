"""StripeProvider: webhook verification and mapping on payloads signed for real, and the API
calls over real HTTP against the local Stripe host (sandbox/stripe_host.py)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from billing.errors import MalformedEvent, PaymentError, WebhookRejected
from billing.events import EventKind
from billing.provider import CheckoutRequest, WebhookAck
from billing.providers.stripe_provider import StripeProvider, recurring_interval
from sandbox.stripe_host import FakeStripe
from tests.stripe_fixtures import (
    SECRET_KEY,
    WEBHOOK_SECRET,
    completed_session,
    dispute,
    paid_invoice,
    refunded_charge,
    sign_payload,
    signed,
    subscription,
)


@pytest.fixture
def provider() -> StripeProvider:
    return StripeProvider(SECRET_KEY, WEBHOOK_SECRET)


def parse(provider: StripeProvider, event_type: str, obj: dict, **kw):
    headers, body, event = signed(event_type, obj, **kw)
    return provider.parse_webhook(headers, body), event


# -- webhook verification ------------------------------------------------------------------


def test_completed_session_maps_every_field(provider):
    session = completed_session("GP-1001", amount=499, currency="usd")
    notice, event = parse(provider, "checkout.session.completed", session)
    assert (notice.event_id, notice.event_type) == (event["id"], "checkout.session.completed")
    ev = notice.event
    assert ev is not None
    assert ev.provider == "stripe" and ev.kind is EventKind.PAID
    assert (ev.event_id, ev.event_type) == (event["id"], "checkout.session.completed")
    assert ev.order_no == "GP-1001"
    assert (ev.amount_minor, ev.currency) == (499, "USD")
    assert ev.provider_payment_id == session["payment_intent"]
    assert ev.provider_ref == session["id"]
    assert ev.subscription_id is None and ev.period_end is None


def test_header_name_is_case_insensitive(provider):
    headers, body, _ = signed("checkout.session.completed", completed_session())
    lower = {k.lower(): v for k, v in headers.items()}
    assert provider.parse_webhook(lower, body).event is not None


def test_rejects_tampered_body(provider):
    headers, body, _ = signed("checkout.session.completed", completed_session(amount=499))
    with pytest.raises(WebhookRejected, match="signature"):
        provider.parse_webhook(headers, body.replace(b"499", b"1"))


def test_rejects_wrong_secret(provider):
    headers, body, _ = signed(
        "checkout.session.completed", completed_session(), secret="whsec_someone_else"
    )
    with pytest.raises(WebhookRejected, match="signature"):
        provider.parse_webhook(headers, body)


def test_rejects_missing_header(provider):
    _, body, _ = signed("checkout.session.completed", completed_session())
    with pytest.raises(WebhookRejected, match="missing Stripe-Signature"):
        provider.parse_webhook({"Content-Type": "application/json"}, body)


def test_rejects_garbled_header(provider):
    _, body, _ = signed("checkout.session.completed", completed_session())
    with pytest.raises(WebhookRejected):
        provider.parse_webhook({"Stripe-Signature": "nonsense"}, body)


def test_rejects_stale_timestamp(provider):
    headers, body, _ = signed(
        "checkout.session.completed", completed_session(), timestamp=int(time.time()) - 301
    )
    with pytest.raises(WebhookRejected, match="tolerance"):
        provider.parse_webhook(headers, body)


def test_accepts_timestamp_inside_tolerance(provider):
    headers, body, _ = signed(
        "checkout.session.completed", completed_session(), timestamp=int(time.time()) - 240
    )
    assert provider.parse_webhook(headers, body).event is not None


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"object": "charge"}',
        b'{"object": "event", "type": "x", "data": {}}',
    ],
)
def test_signed_bodies_that_are_not_events_are_malformed(provider, body):
    # Verified, so not rejected: ingest stores them raw with their error (issue 6).
    with pytest.raises(MalformedEvent):
        provider.parse_webhook({"Stripe-Signature": sign_payload(body, WEBHOOK_SECRET)}, body)


def test_rejects_body_that_is_not_utf8(provider):
    body = b'{"id": "evt_1", "object": "event", "note": "\xff"}'
    with pytest.raises(WebhookRejected, match="UTF-8"):
        provider.parse_webhook({"Stripe-Signature": sign_payload(body, WEBHOOK_SECRET)}, body)


def test_signed_event_of_unexpected_shape_is_malformed(provider):
    with pytest.raises(MalformedEvent, match="unexpected shape"):
        parse(provider, "checkout.session.completed", completed_session(amount_total="499"))


# -- event mapping -------------------------------------------------------------------------


def test_unpaid_completed_session_waits(provider):
    session = completed_session(payment_status="unpaid")
    notice, event = parse(provider, "checkout.session.completed", session)
    assert (notice.event_id, notice.event) == (event["id"], None)


def test_async_payment_succeeded_is_paid(provider):
    notice, _ = parse(provider, "checkout.session.async_payment_succeeded", completed_session())
    assert notice.event is not None and notice.event.kind is EventKind.PAID


def test_async_payment_failed(provider):
    session = completed_session("GP-9", payment_status="unpaid")
    notice, _ = parse(provider, "checkout.session.async_payment_failed", session)
    assert notice.event is not None
    assert (notice.event.kind, notice.event.order_no) == (EventKind.PAYMENT_FAILED, "GP-9")


def test_no_payment_required_is_paid(provider):
    notice, _ = parse(
        provider,
        "checkout.session.completed",
        completed_session(payment_status="no_payment_required", amount=1),
    )
    assert notice.event is not None and notice.event.kind is EventKind.PAID


def test_a_zero_amount_payment_is_not_money(provider):
    # Every stored amount is positive (issue 6): a "paid" of 0 is kept unapplied.
    with pytest.raises(MalformedEvent, match="amount 0"):
        parse(
            provider,
            "checkout.session.completed",
            completed_session(payment_status="no_payment_required", amount=0),
        )


def test_order_no_falls_back_to_metadata(provider):
    session = completed_session("GP-7", client_reference_id=None)
    notice, _ = parse(provider, "checkout.session.completed", session)
    assert notice.event is not None and notice.event.order_no == "GP-7"


def test_subscription_session_pays_with_its_first_invoice(provider):
    session = completed_session(
        "GP-2",
        mode="subscription",
        payment_intent=None,
        subscription="sub_1Abc",
        invoice="in_1First",
    )
    notice, _ = parse(provider, "checkout.session.completed", session)
    ev = notice.event
    assert ev is not None
    assert (ev.subscription_id, ev.provider_payment_id) == ("sub_1Abc", "in_1First")


def test_session_without_payment_ids_uses_session_id(provider):
    session = completed_session(payment_intent=None)
    notice, _ = parse(provider, "checkout.session.completed", session)
    assert notice.event is not None and notice.event.provider_payment_id == session["id"]


def test_invoice_paid_is_a_renewal(provider):
    end = int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())
    invoice = paid_invoice(
        "GP-3", subscription_id="sub_1Abc", amount=999, period_end=end, currency="eur"
    )
    notice, _ = parse(provider, "invoice.paid", invoice)
    ev = notice.event
    assert ev is not None and ev.kind is EventKind.RENEWED
    assert (ev.order_no, ev.amount_minor, ev.currency) == ("GP-3", 999, "EUR")
    assert (ev.subscription_id, ev.provider_payment_id) == ("sub_1Abc", invoice["id"])
    assert ev.period_end == datetime(2027, 1, 1, tzinfo=UTC)
    assert ev.period_end.tzinfo is not None and ev.period_end.utcoffset() == timedelta(0)


def test_invoice_paid_takes_the_latest_line_period(provider):
    invoice = paid_invoice(period_end=2_000_000_000)
    extra = dict(invoice["lines"]["data"][0], period={"start": 1, "end": 2_000_000_100})
    invoice["lines"]["data"].append(extra)
    notice, _ = parse(provider, "invoice.paid", invoice)
    assert notice.event is not None
    assert notice.event.period_end == datetime.fromtimestamp(2_000_000_100, UTC)


def test_invoice_paid_older_api_shape(provider):
    """Before 2025 the subscription sat on the invoice itself."""
    invoice = paid_invoice(
        None, subscription="sub_1Old", subscription_details={"metadata": {"order_no": "GP-4"}}
    )
    invoice["parent"] = None
    notice, _ = parse(provider, "invoice.paid", invoice)
    assert notice.event is not None
    assert (notice.event.order_no, notice.event.subscription_id) == ("GP-4", "sub_1Old")


def test_invoice_payment_failed(provider):
    invoice = paid_invoice("GP-5", amount_paid=0, amount_due=999, status="open")
    notice, _ = parse(provider, "invoice.payment_failed", invoice)
    ev = notice.event
    assert ev is not None and ev.kind is EventKind.PAYMENT_FAILED
    assert (ev.order_no, ev.amount_minor) == ("GP-5", 999)


@pytest.mark.parametrize(
    "event_type,kind",
    [
        ("customer.subscription.updated", EventKind.SUBSCRIPTION_UPDATED),
        ("customer.subscription.deleted", EventKind.SUBSCRIPTION_ENDED),
    ],
)
def test_subscription_events(provider, event_type, kind):
    sub = subscription("GP-6", period_end=1_900_000_000)
    notice, _ = parse(provider, event_type, sub)
    ev = notice.event
    assert ev is not None and ev.kind is kind
    assert (ev.order_no, ev.subscription_id) == ("GP-6", sub["id"])
    assert ev.period_end == datetime.fromtimestamp(1_900_000_000, UTC)
    assert (ev.amount_minor, ev.currency) == (1000, "USD")


def test_subscription_period_end_on_the_subscription_itself(provider):
    sub = subscription(current_period_end=1_800_000_000)
    notice, _ = parse(provider, "customer.subscription.updated", sub)
    assert notice.event is not None
    assert notice.event.period_end == datetime.fromtimestamp(1_800_000_000, UTC)


def test_charge_refunded(provider):
    charge = refunded_charge("pi_1Paid", amount=499, refunded=200, order_no="GP-8")
    notice, _ = parse(provider, "charge.refunded", charge)
    ev = notice.event
    assert ev is not None and ev.kind is EventKind.REFUNDED
    assert (ev.order_no, ev.amount_minor, ev.currency) == ("GP-8", 200, "USD")
    assert ev.provider_payment_id == "pi_1Paid"


def test_charge_refunded_without_payment_intent_uses_charge(provider):
    charge = refunded_charge(None, order_no=None)
    notice, _ = parse(provider, "charge.refunded", charge)
    assert notice.event is not None
    assert (notice.event.provider_payment_id, notice.event.order_no) == (charge["id"], None)


def test_dispute_created(provider):
    notice, _ = parse(provider, "charge.dispute.created", dispute("pi_1Paid", amount=499))
    ev = notice.event
    assert ev is not None and ev.kind is EventKind.DISPUTED
    assert (ev.amount_minor, ev.currency, ev.provider_payment_id) == (499, "USD", "pi_1Paid")
    notice, _ = parse(provider, "charge.dispute.created", dispute(None, charge="ch_1X"))
    assert notice.event is not None and notice.event.provider_payment_id == "ch_1X"


def test_unknown_type_is_noticed_without_event(provider):
    notice, event = parse(provider, "customer.created", {"id": "cus_1", "object": "customer"})
    assert (notice.event_id, notice.event_type, notice.event) == (
        event["id"],
        "customer.created",
        None,
    )


def test_ack(provider):
    assert provider.ack() == WebhookAck(200, b'{"received": true}', "application/json")


def test_accepts():
    p = StripeProvider(SECRET_KEY, WEBHOOK_SECRET)
    assert p.accepts("USD") and p.accepts("eur") and p.accepts("JPY") and p.accepts("CNY")
    assert not p.accepts("XTR") and not p.accepts("ABC")


@pytest.mark.parametrize(
    "days,expected",
    [
        (30, ("month", 1)),
        (31, ("month", 1)),
        (365, ("year", 1)),
        (366, ("year", 1)),
        (60, ("month", 2)),
        (90, ("month", 3)),
        (360, ("month", 12)),
        (7, ("day", 7)),
        (45, ("day", 45)),
    ],
)
def test_recurring_interval(days, expected):
    r = recurring_interval(days)
    assert (r["interval"], r["interval_count"]) == expected


@pytest.mark.parametrize("days", [None, 0, -30])
def test_recurring_interval_needs_a_period(days):
    with pytest.raises(PaymentError):
        recurring_interval(days)


# -- API calls over HTTP against the local host ---------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeStripe]:
    host = FakeStripe(SECRET_KEY, WEBHOOK_SECRET)
    await host.start()
    yield host
    await host.stop()


# `stripe`, the provider against this `fake` host: tests/unit/conftest.py


def request(
    order_no: str = "GP-100",
    *,
    recurring: bool = False,
    days: int | None = 30,
    amount: int = 499,
    currency: str = "USD",
) -> CheckoutRequest:
    return CheckoutRequest(
        order_no=order_no,
        title="VIP club, 30 days",
        amount_minor=amount,
        currency=currency,
        recurring=recurring,
        duration_days=days,
        success_url="https://t.me/gatepass_bot?start=paid",
        cancel_url="https://t.me/gatepass_bot",
        customer_ref="42",
        metadata={"plan_id": "7"},
    )


async def test_create_checkout_payment_mode(stripe, fake):
    checkout = await stripe.create_checkout(request("GP-100"))
    assert checkout.provider_ref.startswith("cs_test_")
    assert checkout.url == f"{fake.base_url}/pay/{checkout.provider_ref}"
    sent = fake.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/checkout/sessions")
    assert sent.headers["Authorization"] == f"Bearer {SECRET_KEY}"
    p = sent.params
    assert p["mode"] == "payment" and p["client_reference_id"] == "GP-100"
    assert p["metadata"] == {"order_no": "GP-100", "plan_id": "7", "customer_ref": "42"}
    assert p["payment_intent_data"] == {"metadata": {"order_no": "GP-100"}}
    assert p["line_items"] == [
        {
            "price_data": {
                "currency": "usd",
                "unit_amount": "499",
                "product_data": {"name": "VIP club, 30 days"},
            },
            "quantity": "1",
        }
    ]
    assert "subscription_data" not in p and "expires_at" not in p
    session = fake.sessions[checkout.provider_ref]
    assert (session["amount_total"], session["currency"], session["status"]) == (499, "usd", "open")


async def test_create_checkout_is_idempotent_per_order(stripe, fake):
    first = await stripe.create_checkout(request("GP-101"))
    again = await stripe.create_checkout(request("GP-101"))
    assert first == again and len(fake.sessions) == 1


async def test_create_checkout_subscription_mode(stripe, fake):
    checkout = await stripe.create_checkout(request("GP-102", recurring=True, days=30))
    p = fake.requests[-1].params
    assert p["mode"] == "subscription"
    assert p["line_items"][0]["price_data"]["recurring"] == {
        "interval": "month",
        "interval_count": "1",
    }
    assert p["subscription_data"] == {"metadata": {"order_no": "GP-102"}}
    assert "payment_intent_data" not in p
    assert fake.sessions[checkout.provider_ref]["mode"] == "subscription"


async def test_create_checkout_yearly(stripe, fake):
    await stripe.create_checkout(request("GP-103", recurring=True, days=365))
    assert fake.requests[-1].params["line_items"][0]["price_data"]["recurring"] == {
        "interval": "year",
        "interval_count": "1",
    }


async def test_checkout_ttl_sets_expires_at(fake):
    class Clock:
        def now(self) -> datetime:
            return datetime.now(UTC)

    p = StripeProvider(
        SECRET_KEY, WEBHOOK_SECRET, fake.base_url, Clock(), checkout_ttl=timedelta(hours=1)
    )
    try:
        checkout = await p.create_checkout(request("GP-104"))
    finally:
        await p.close()
    expires = fake.sessions[checkout.provider_ref]["expires_at"]
    assert abs(expires - (time.time() + 3600)) < 10


async def test_wrong_api_key(fake):
    p = StripeProvider("sk_test_wrong_key_123456", WEBHOOK_SECRET, fake.base_url)
    try:
        with pytest.raises(PaymentError) as err:
            await p.create_checkout(request())
    finally:
        await p.close()
    assert "API key" in str(err.value) and "sk_test_wrong" not in str(err.value)


async def test_validation_error_surfaces_as_payment_error(stripe, fake):
    with pytest.raises(PaymentError, match=r"maximum billing interval.*interval_count"):
        await stripe.create_checkout(request(recurring=True, days=400))


async def test_refuses_stars_and_bad_amounts_without_calling(stripe, fake):
    with pytest.raises(PaymentError):
        await stripe.create_checkout(request(currency="XTR"))
    with pytest.raises(PaymentError):
        await stripe.create_checkout(request(amount=0))
    assert fake.requests == []


async def test_fetch_status_open_then_paid(stripe, fake):
    checkout = await stripe.create_checkout(request("GP-105"))
    assert await stripe.fetch_status(checkout.provider_ref) == "open"
    await fake.pay(checkout.provider_ref)
    assert await stripe.fetch_status(checkout.provider_ref) == "paid"


async def test_fetch_status_async_payment_pending_is_open(stripe, fake):
    checkout = await stripe.create_checkout(request("GP-106"))
    fake.sessions[checkout.provider_ref].update(status="complete", payment_status="unpaid")
    assert await stripe.fetch_status(checkout.provider_ref) == "open"


async def test_expire_checkout(stripe, fake):
    checkout = await stripe.create_checkout(request("GP-107"))
    assert await stripe.expire_checkout(checkout.provider_ref) == "expired"
    assert await stripe.fetch_status(checkout.provider_ref) == "expired"
    assert await stripe.expire_checkout(checkout.provider_ref) == "expired"  # again: no error


async def test_expire_checkout_reports_a_race_with_payment(stripe, fake):
    checkout = await stripe.create_checkout(request("GP-108"))
    await fake.pay(checkout.provider_ref)
    assert await stripe.expire_checkout(checkout.provider_ref) == "paid"


async def test_unknown_session(stripe):
    with pytest.raises(PaymentError, match=r"No such checkout\.session"):
        await stripe.fetch_status("cs_test_nope")


async def test_cancel_subscription_at_period_end(stripe, fake):
    checkout = await stripe.create_checkout(request("GP-109", recurring=True))
    await fake.pay(checkout.provider_ref)
    sub_id = fake.sessions[checkout.provider_ref]["subscription"]
    await stripe.cancel_subscription_at_period_end(sub_id)
    sub = fake.subscriptions[sub_id]
    assert sub["cancel_at_period_end"] is True
    assert sub["cancel_at"] == sub["items"]["data"][0]["current_period_end"]
    with pytest.raises(PaymentError, match="No such subscription"):
        await stripe.cancel_subscription_at_period_end("sub_1Nope")


async def test_close_is_idempotent_and_client_rebuilds(stripe, fake):
    await stripe.create_checkout(request("GP-110"))
    await stripe.close()
    await stripe.close()
    await stripe.create_checkout(request("GP-111"))
    assert len(fake.sessions) == 2
