"""The local Stripe host: form decoding, auth, Stripe-like validation, and signed event
delivery that the official SDK's own verifier accepts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import stripe
from aiohttp import web

from sandbox.stripe_host import (
    ApiError,
    FakeStripe,
    build_event,
    checkout_session_object,
    decode_form,
    event_body,
    sign_payload,
)

KEY = "sk_test_host_123456789"
WHSEC = "whsec_host_test"


class Receiver:
    """A tiny webhook endpoint that keeps what it got and answers `status`."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _hook(self, request: web.Request) -> web.Response:
        self.got.append((dict(request.headers), await request.read()))
        return web.Response(status=self.status, text='{"received": true}')

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/webhooks/stripe", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/webhooks/stripe"

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def events(self) -> list[Any]:
        """Each delivery verified and parsed by the official SDK."""
        return [
            stripe.Webhook.construct_event(body, h["Stripe-Signature"], WHSEC)
            for h, body in self.got
        ]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def host(receiver: Receiver) -> AsyncIterator[FakeStripe]:
    h = FakeStripe(KEY, WHSEC, webhook_url=receiver.url)
    await h.start()
    yield h
    await h.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def call(
    http: aiohttp.ClientSession,
    host: FakeStripe,
    method: str,
    path: str,
    form: dict[str, str] | None = None,
    key: str | None = KEY,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    hdrs = {"Authorization": f"Bearer {key}"} if key else {}
    async with http.request(
        method, host.base_url + path, data=form, headers={**hdrs, **(headers or {})}
    ) as resp:
        return resp.status, await resp.json()


def session_form(**extra: str) -> dict[str, str]:
    form = {
        "mode": "payment",
        "line_items[0][price_data][currency]": "usd",
        "line_items[0][price_data][unit_amount]": "499",
        "line_items[0][price_data][product_data][name]": "VIP club",
        "line_items[0][quantity]": "1",
        "client_reference_id": "GP-1",
        "metadata[order_no]": "GP-1",
        "success_url": "https://example.com/ok?s={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://example.com/no",
    }
    form.update(extra)
    return {k: v for k, v in form.items() if v != "<drop>"}


# -- form decoding --------------------------------------------------------------------------


def test_decode_form_nests_brackets_into_dicts_and_lists():
    pairs = [
        ("mode", "payment"),
        ("line_items[0][price_data][currency]", "usd"),
        ("line_items[0][price_data][recurring][interval]", "month"),
        ("line_items[0][quantity]", "1"),
        ("line_items[1][quantity]", "2"),
        ("metadata[order_no]", "GP-1"),
        ("expand[]", "subscription"),
        ("expand[]", "invoice"),
    ]
    assert decode_form(pairs) == {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {"currency": "usd", "recurring": {"interval": "month"}},
                "quantity": "1",
            },
            {"quantity": "2"},
        ],
        "metadata": {"order_no": "GP-1"},
        "expand": ["subscription", "invoice"],
    }


@pytest.mark.parametrize(
    "pairs",
    [
        [("line_items[1][quantity]", "1")],  # arrays start at 0
        [("a", "1"), ("a[b]", "2")],  # scalar then hash
        [("a[b]", "1"), ("a", "2")],  # hash then scalar
        [("a]b[", "1")],  # malformed key
    ],
)
def test_decode_form_rejects_bad_shapes(pairs):
    with pytest.raises(ApiError):
        decode_form(pairs)


def test_sign_payload_matches_the_sdk():
    body = b'{"id": "evt_1", "object": "event"}'
    assert sign_payload(body, WHSEC, 1_700_000_000) == (
        stripe.WebhookSignature.generate_signature_header(body.decode(), WHSEC, 1_700_000_000)
    )


def test_helpers_build_real_shaped_objects():
    s = checkout_session_object(client_reference_id="GP-1")
    assert s["object"] == "checkout.session" and s["id"].startswith("cs_test_")
    assert (s["status"], s["payment_status"], s["client_reference_id"]) == (
        "open",
        "unpaid",
        "GP-1",
    )
    ev = build_event("checkout.session.completed", s, event_id="evt_1X", created=123)
    assert (ev["id"], ev["object"], ev["type"], ev["created"]) == (
        "evt_1X",
        "event",
        "checkout.session.completed",
        123,
    )
    assert ev["data"]["object"] == s and ev["livemode"] is False
    assert {"api_version", "pending_webhooks", "request"} <= ev.keys()


# -- auth and validation ----------------------------------------------------------------------


async def test_missing_key_is_401(host, http):
    status, body = await call(http, host, "POST", "/v1/checkout/sessions", session_form(), key=None)
    assert status == 401
    assert body["error"]["type"] == "invalid_request_error"
    assert "did not provide an API key" in body["error"]["message"]


async def test_wrong_key_is_401_and_masked(host, http):
    status, body = await call(
        http, host, "POST", "/v1/checkout/sessions", session_form(), key="sk_test_wrong_000000000"
    )
    assert status == 401
    msg = body["error"]["message"]
    assert msg.startswith("Invalid API Key provided: ") and "wrong_000000000" not in msg


async def test_create_session_returns_a_real_shaped_object(host, http):
    status, s = await call(http, host, "POST", "/v1/checkout/sessions", session_form())
    assert status == 200
    assert s["object"] == "checkout.session" and s["id"].startswith("cs_test_")
    assert s["url"] == f"{host.base_url}/pay/{s['id']}"
    assert (s["status"], s["payment_status"], s["mode"]) == ("open", "unpaid", "payment")
    assert (s["amount_total"], s["currency"], s["client_reference_id"]) == (499, "usd", "GP-1")
    assert s["metadata"] == {"order_no": "GP-1"} and s["livemode"] is False
    assert s["expires_at"] > s["created"]
    status, again = await call(http, host, "GET", f"/v1/checkout/sessions/{s['id']}")
    assert (status, again) == (200, s)


@pytest.mark.parametrize(
    "change,param,message",
    [
        ({"mode": "<drop>"}, "mode", "Missing required param: mode"),
        ({"mode": "donation"}, "mode", "Invalid mode"),
        (
            {"line_items[0][price_data][unit_amount]": "-5"},
            "line_items[0][price_data][unit_amount]",
            "greater than or equal to 0",
        ),
        (
            {"line_items[0][price_data][unit_amount]": "4.99"},
            "line_items[0][price_data][unit_amount]",
            "Invalid integer",
        ),
        (
            {"line_items[0][price_data][currency]": "dollars"},
            "line_items[0][price_data][currency]",
            "Invalid currency",
        ),
        (
            {"line_items[0][price_data][product_data][name]": "<drop>"},
            "line_items[0][price_data][product_data][name]",
            "Missing required param",
        ),
        ({"line_items[0][quantity]": "0"}, "line_items[0][quantity]", "greater than or equal"),
        (
            {"line_items[0][price_data][recurring][interval]": "month"},
            "line_items[0][price_data][recurring]",
            "`payment` mode but passed a recurring price",
        ),
        ({"mode": "subscription"}, "line_items", "at least one recurring price"),
        (
            {"mode": "subscription", "line_items[0][price_data][recurring][interval]": "fortnight"},
            "line_items[0][price_data][recurring][interval]",
            "must be one of",
        ),
        (
            {
                "mode": "subscription",
                "payment_intent_data[metadata][order_no]": "GP-1",
                "line_items[0][price_data][recurring][interval]": "month",
            },
            "payment_intent_data",
            "can not pass",
        ),
        ({"colour": "blue"}, "colour", "Received unknown parameter"),
        ({"expires_at": "12"}, "expires_at", "30 minutes"),
    ],
)
async def test_validation_errors_name_the_param(host, http, change, param, message):
    status, body = await call(http, host, "POST", "/v1/checkout/sessions", session_form(**change))
    assert status == 400, body
    err = body["error"]
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param and message in err["message"]
    assert host.sessions == {}


async def test_missing_line_items(host, http):
    form = {"mode": "payment", "success_url": "https://example.com"}
    status, body = await call(http, host, "POST", "/v1/checkout/sessions", form)
    assert status == 400 and body["error"]["param"] == "line_items"


async def test_unknown_ids_are_404_resource_missing(host, http):
    for method, path in [
        ("GET", "/v1/checkout/sessions/cs_test_nope"),
        ("POST", "/v1/checkout/sessions/cs_test_nope/expire"),
        ("GET", "/v1/subscriptions/sub_nope"),
        ("POST", "/v1/subscriptions/sub_nope"),
    ]:
        status, body = await call(http, host, method, path)
        assert (status, body["error"]["code"]) == (404, "resource_missing"), path
    status, body = await call(http, host, "GET", "/v1/charges")
    assert status == 404 and "Unrecognized request URL" in body["error"]["message"]


async def test_expire_only_when_open(host, http, receiver):
    _, s = await call(http, host, "POST", "/v1/checkout/sessions", session_form())
    status, expired = await call(http, host, "POST", f"/v1/checkout/sessions/{s['id']}/expire")
    assert (status, expired["status"]) == (200, "expired")
    status, body = await call(http, host, "POST", f"/v1/checkout/sessions/{s['id']}/expire")
    assert status == 400 and 'status of "expired"' in body["error"]["message"]
    await host.settle()
    assert [e.type for e in receiver.events()] == ["checkout.session.expired"]
    with pytest.raises(ValueError):
        await host.pay(s["id"])


async def test_idempotency_key_replays_the_first_answer(host, http):
    hdrs = {"Idempotency-Key": "k-1"}
    _, first = await call(http, host, "POST", "/v1/checkout/sessions", session_form(), headers=hdrs)
    _, again = await call(http, host, "POST", "/v1/checkout/sessions", session_form(), headers=hdrs)
    assert first["id"] == again["id"] and len(host.sessions) == 1


async def test_session_expires_at_expires_at(receiver):
    class Clock:
        def __init__(self) -> None:
            self.at = datetime.now(UTC)

        def now(self) -> datetime:
            return self.at

    clock = Clock()
    h = FakeStripe(KEY, WHSEC, clock=clock)
    await h.start()
    try:
        async with aiohttp.ClientSession() as http:
            _, s = await call(http, h, "POST", "/v1/checkout/sessions", session_form())
            clock.at += timedelta(hours=25)
            _, s = await call(http, h, "GET", f"/v1/checkout/sessions/{s['id']}")
        assert s["status"] == "expired"
    finally:
        await h.stop()


# -- paying and delivering ---------------------------------------------------------------------


async def test_pay_delivers_a_signed_event_the_sdk_accepts(host, http, receiver):
    _, s = await call(http, host, "POST", "/v1/checkout/sessions", session_form())
    assert await host.pay(s["id"]) == 200
    ((headers, body),) = receiver.got
    assert headers["Stripe-Signature"].startswith("t=") and ",v1=" in headers["Stripe-Signature"]
    (event,) = receiver.events()
    assert (event.type, event.object, event.livemode) == (
        "checkout.session.completed",
        "event",
        False,
    )
    obj = event.data.object
    assert (obj.id, obj.status, obj.payment_status) == (s["id"], "complete", "paid")
    assert obj.payment_intent.startswith("pi_") and obj.amount_total == 499
    assert obj.client_reference_id == "GP-1"
    assert host.deliveries[0].status == 200 and host.deliveries[0].event["id"] == event.id
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, headers["Stripe-Signature"], "whsec_other")
    with pytest.raises(ValueError, match="complete"):
        await host.pay(s["id"])


async def test_pay_can_charge_a_different_amount(host, http, receiver):
    _, s = await call(http, host, "POST", "/v1/checkout/sessions", session_form())
    await host.pay(s["id"], amount_total=1, currency="EUR")
    obj = receiver.events()[0].data.object
    assert (obj.amount_total, obj.currency) == (1, "eur")


async def test_delayed_payment_sends_completed_unpaid_then_succeeded(host, http, receiver):
    _, s = await call(http, host, "POST", "/v1/checkout/sessions", session_form())
    await host.pay(s["id"], delayed=True)
    events = receiver.events()
    assert [(e.type, e.data.object.payment_status) for e in events] == [
        ("checkout.session.completed", "unpaid"),
        ("checkout.session.async_payment_succeeded", "paid"),
    ]


async def test_subscription_flow(host, http, receiver):
    form = session_form(
        mode="subscription",
        **{
            "line_items[0][price_data][recurring][interval]": "month",
            "subscription_data[metadata][order_no]": "GP-1",
        },
    )
    status, s = await call(http, host, "POST", "/v1/checkout/sessions", form)
    assert status == 200
    await host.pay(s["id"])
    completed, paid = receiver.events()
    assert (completed.type, paid.type) == ("checkout.session.completed", "invoice.paid")
    sub_id, inv_id = completed.data.object.subscription, completed.data.object.invoice
    assert sub_id.startswith("sub_") and inv_id.startswith("in_")
    invoice = paid.data.object
    assert invoice.id == inv_id and invoice.amount_paid == 499
    assert invoice.parent.subscription_details.metadata.order_no == "GP-1"
    assert invoice.parent.subscription_details.subscription == sub_id
    first_end = invoice.lines.data[0].period.end

    status, sub = await call(http, host, "GET", f"/v1/subscriptions/{sub_id}")
    assert (status, sub["status"], sub["metadata"]) == (200, "active", {"order_no": "GP-1"})
    assert sub["items"]["data"][0]["current_period_end"] == first_end

    assert await host.advance_period(sub_id) == 200
    renewal = receiver.events()[-1].data.object
    assert renewal.billing_reason == "subscription_cycle"
    assert renewal.lines.data[0].period.start == first_end
    assert renewal.lines.data[0].period.end > first_end

    status, sub = await call(
        http, host, "POST", f"/v1/subscriptions/{sub_id}", {"cancel_at_period_end": "true"}
    )
    assert status == 200 and sub["cancel_at_period_end"] is True
    await host.settle()
    updated = receiver.events()[-1]
    assert updated.type == "customer.subscription.updated"
    assert updated.data.previous_attributes.cancel_at_period_end is False
    await host.advance_period(sub_id)
    ended = receiver.events()[-1]
    assert (ended.type, ended.data.object.status) == ("customer.subscription.deleted", "canceled")


async def test_refund_and_dispute(host, http, receiver):
    _, s = await call(http, host, "POST", "/v1/checkout/sessions", session_form())
    await host.pay(s["id"])
    await host.refund(s["id"], 100)
    await host.dispute(s["id"])
    _, refunded, disputed = receiver.events()
    pi = host.sessions[s["id"]]["payment_intent"]
    assert (refunded.type, refunded.data.object.amount_refunded) == ("charge.refunded", 100)
    assert refunded.data.object.payment_intent == pi
    assert (disputed.type, disputed.data.object.payment_intent) == ("charge.dispute.created", pi)


async def test_pay_page_over_http(host, http, receiver):
    _, s = await call(http, host, "POST", "/v1/checkout/sessions", session_form())
    async with http.get(s["url"]) as resp:
        page = await resp.text()
    assert resp.status == 200 and "<form" in page and "4.99 USD" in page
    async with http.post(s["url"]) as resp:
        page = await resp.text()
    assert resp.status == 200 and "Payment received" in page
    assert f"s={s['id']}" in page  # {CHECKOUT_SESSION_ID} filled in, as Stripe does
    assert host.sessions[s["id"]]["payment_status"] == "paid" and len(receiver.got) == 1
    async with http.post(s["url"]) as resp:
        assert resp.status == 409
    async with http.get(f"{host.base_url}/pay/cs_test_nope") as resp:
        assert resp.status == 404


async def test_failed_deliveries_are_recorded(host, http, receiver):
    _, s = await call(http, host, "POST", "/v1/checkout/sessions", session_form())
    receiver.status = 500
    assert await host.pay(s["id"]) == 500
    receiver.status = 200
    event_id = host.deliveries[-1].event["id"]
    assert await host.redeliver(event_id) == 200
    assert [d.status for d in host.deliveries] == [500, 200]
    assert len({h["Stripe-Signature"] for h, _ in receiver.got}) <= 2
    host.webhook_url = "http://127.0.0.1:9/nowhere"
    assert await host.redeliver(event_id) == 0 and host.deliveries[-1].error


async def test_without_webhook_url_events_are_only_recorded(http):
    h = FakeStripe(KEY, WHSEC)
    await h.start()
    try:
        _, s = await call(http, h, "POST", "/v1/checkout/sessions", session_form())
        assert await h.pay(s["id"]) is None
        assert [e["type"] for e in h.events] == ["checkout.session.completed"]
        assert h.deliveries == []
    finally:
        await h.stop()


def test_event_body_verifies_on_raw_bytes():
    ev = build_event("customer.created", {"id": "cus_1", "object": "customer"})
    body = event_body(ev)
    event = stripe.Webhook.construct_event(body, sign_payload(body, WHSEC), WHSEC)
    assert event.id == ev["id"]


async def test_invoice_payments_link_a_subscriptions_payment_intent_to_its_invoice(host, http):
    form = session_form(
        mode="subscription", **{"line_items[0][price_data][recurring][interval]": "month"}
    )
    status, s = await call(http, host, "POST", "/v1/checkout/sessions", form)
    await host.pay(s["id"])
    s = host.sessions[s["id"]]
    charge = host.charges[host._checkouts[s["id"]].charge_id]
    assert charge["metadata"] == {}  # the charge itself names no order and no invoice
    pi = charge["payment_intent"]
    status, page = await call(
        http,
        host,
        "GET",
        f"/v1/invoice_payments?payment[type]=payment_intent&payment[payment_intent]={pi}&limit=1",
    )
    assert status == 200 and page["object"] == "list"
    (ip,) = page["data"]
    assert (ip["object"], ip["invoice"], ip["status"]) == ("invoice_payment", s["invoice"], "paid")
    assert ip["payment"] == {"type": "payment_intent", "payment_intent": pi}
    status, page = await call(
        http,
        host,
        "GET",
        "/v1/invoice_payments?payment[type]=payment_intent&payment[payment_intent]=pi_none",
    )
    assert (status, page["data"]) == (200, [])
    # Stripe's refusals: an unknown payment type, a missing id, an unknown parameter.
    for query, param in (
        ("payment[type]=card", "payment[type]"),
        ("payment[type]=payment_intent", "payment[payment_intent]"),
        ("customer=cus_1", "customer"),
    ):
        status, err = await call(http, host, "GET", f"/v1/invoice_payments?{query}")
        assert status == 400 and err["error"]["param"] == param, (query, err)


# -- refunds (POST /v1/refunds) --------------------------------------------------------------


async def _paid(host: FakeStripe, http: aiohttp.ClientSession) -> tuple[str, dict[str, Any]]:
    _, s = await call(http, host, "POST", "/v1/checkout/sessions", session_form())
    await host.pay(s["id"])
    pi = host.sessions[s["id"]]["payment_intent"]
    return s["id"], next(c for c in host.charges.values() if c["payment_intent"] == pi)


async def test_refund_api_refunds_and_then_sends_charge_refunded(host, http, receiver):
    _, ch = await _paid(host, http)
    status, refund = await call(
        http,
        host,
        "POST",
        "/v1/refunds",
        {"payment_intent": ch["payment_intent"], "amount": "200", "reason": "duplicate"},
        headers={"Idempotency-Key": "k1"},
    )
    assert status == 200
    assert (
        refund["object"],
        refund["amount"],
        refund["status"],
        refund["charge"],
        refund["reason"],
    ) == ("refund", 200, "succeeded", ch["id"], "duplicate")
    # The same key again: the first answer, no second refund.
    again_status, again = await call(
        http,
        host,
        "POST",
        "/v1/refunds",
        {"payment_intent": ch["payment_intent"], "amount": "200"},
        headers={"Idempotency-Key": "k1"},
    )
    assert (again_status, again["id"]) == (200, refund["id"])
    # The rest, by charge id, with no amount.
    status, rest = await call(http, host, "POST", "/v1/refunds", {"charge": ch["id"]})
    assert (status, rest["amount"]) == (200, 299)
    await host.settle()
    events = [e for e in receiver.events() if e.type == "charge.refunded"]
    assert [e.data.object.amount_refunded for e in events] == [200, 499]
    assert events[-1].data.object.refunded is True
    status, got = await call(http, host, "GET", f"/v1/refunds/{refund['id']}")
    assert (status, got["amount"]) == (200, 200)


@pytest.mark.parametrize(
    "form,status,code,message",
    [
        ({}, 400, None, "One of the following params should be provided"),
        ({"payment_intent": "pi_1Nope"}, 404, "resource_missing", "No such payment_intent"),
        ({"charge": "ch_1Nope"}, 404, "resource_missing", "No such charge"),
        ({"amount": "0"}, 400, "parameter_invalid_integer", "greater than or equal to 1"),
        ({"amount": "500"}, 400, "amount_too_large", "greater than unrefunded amount"),
        ({"reason": "because"}, 400, None, "Invalid reason"),
    ],
)
async def test_refund_api_errors_are_stripes(host, http, form, status, code, message):
    _, ch = await _paid(host, http)
    if form and "payment_intent" not in form and "charge" not in form:
        form = {"payment_intent": ch["payment_intent"], **form}
    got_status, body = await call(http, host, "POST", "/v1/refunds", form)
    assert got_status == status
    assert message in body["error"]["message"]
    assert body["error"].get("code") == code
    assert ch["amount_refunded"] == 0


async def test_refund_api_refuses_a_refunded_or_disputed_charge(host, http):
    _sid, ch = await _paid(host, http)
    await call(http, host, "POST", "/v1/refunds", {"charge": ch["id"]})
    status, body = await call(http, host, "POST", "/v1/refunds", {"charge": ch["id"]})
    assert (status, body["error"]["code"]) == (400, "charge_already_refunded")
    sid2, ch2 = await _paid(host, http)
    await host.dispute(sid2)
    status, body = await call(http, host, "POST", "/v1/refunds", {"charge": ch2["id"]})
    assert (status, body["error"]["code"]) == (400, "charge_disputed")


async def test_unavailable_answers_503_and_saves_no_idempotent_answer(host, http):
    _, ch = await _paid(host, http)
    host.fail_next = 1
    status, body = await call(
        http, host, "POST", "/v1/refunds", {"charge": ch["id"]}, headers={"Idempotency-Key": "k2"}
    )
    assert (status, body["error"]["type"]) == (503, "api_error")
    assert ch["amount_refunded"] == 0
    status, _ = await call(
        http, host, "POST", "/v1/refunds", {"charge": ch["id"]}, headers={"Idempotency-Key": "k2"}
    )
    assert status == 200 and ch["amount_refunded"] == 499


async def test_dispute_closes_won_or_lost(host, http, receiver):
    sid, _ = await _paid(host, http)
    await host.dispute(sid)
    await host.close_dispute(sid, "won")
    closed = receiver.events()[-1]
    assert (closed.type, closed.data.object.status) == ("charge.dispute.closed", "won")
    with pytest.raises(ValueError):
        await host.close_dispute(sid, "lost")
