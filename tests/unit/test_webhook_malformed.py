"""Issue 6: a verified (correctly signed) body that is malformed is stored raw with its error
(processed, never applied) and answered 2xx or 4xx, never 500, and changes nothing else."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import select

from billing.providers.sandbox_provider import SIGNATURE_HEADER as SANDBOX_HEADER
from billing.providers.sandbox_provider import sign
from sandbox.stripe_host import build_event
from storage.models import Order, WebhookEvent
from tests.factories import SANDBOX_SECRET, make_order, make_shop
from tests.stripe_fixtures import (
    WEBHOOK_SECRET,
    completed_session,
    paid_invoice,
    sign_payload,
)
from tests.webhook_http import webhook_client

DEEP = 100_000  # json.loads raises RecursionError long before this depth


def _session(order_no: str, **fields: Any) -> dict[str, Any]:
    return build_event("checkout.session.completed", completed_session(order_no, **fields))


def _with(event: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**event, **fields}


# Each case: the order number -> the body (bytes) of a signed Stripe event.
STRIPE_CASES: dict[str, Any] = {
    "amount as text": lambda o: _session(o, amount_total="499"),
    "amount as list": lambda o: _session(o, amount_total=[499]),
    "amount as float": lambda o: _session(o, amount_total=4.99),
    "amount as bool": lambda o: _session(o, amount_total=True),
    "negative amount": lambda o: _session(o, amount_total=-500),
    "zero amount": lambda o: _session(o, amount_total=0),
    "amount over the bound": lambda o: _session(o, amount_total=10**12 + 1),
    "amount past BIGINT": lambda o: _session(o, amount_total=2**70),
    "unknown currency": lambda o: _session(o, currency="zzz"),
    "long currency": lambda o: _session(o, currency="ZZZZZZZZZZZZZZZ"),
    "currency as list": lambda o: _session(o, currency=["usd"]),
    "order number as list": lambda o: _session(o, client_reference_id=[o]),
    "order number as object": lambda o: _session(o, client_reference_id={"id": o}),
    "NUL in order number": lambda o: _session(o, client_reference_id=o + "\x00"),
    "lone surrogate in payment id": lambda o: _session(o, payment_intent="pi_\ud800"),
    "over-long payment id": lambda o: _session(o, payment_intent="pi_" + "x" * 300),
    "over-long session id": lambda o: _session(o, id="cs_" + "x" * 300),
    "deep metadata": lambda o: _session(o, client_reference_id=None, metadata="DEEP"),
    "over-long event id": lambda o: _with(_session(o), id="evt_" + "x" * 300),
    "NUL in event id": lambda o: _with(_session(o), id="evt_\x00"),
    "event id as number": lambda o: _with(_session(o), id=12345),
    "over-long event type": lambda o: _with(_session(o), type="checkout." + "x" * 100),
    "no data": lambda o: _with(_session(o), data=None),
    "data.object a list": lambda o: _with(_session(o), data={"object": [1, 2]}),
    "period end past year 9999": lambda o: build_event(
        "invoice.paid", paid_invoice(o, period_end=10**12)
    ),
    "period end after 2200": lambda o: build_event(
        "invoice.paid", paid_invoice(o, period_end=8_000_000_000)
    ),
    "JSON array": lambda o: [1, 2, 3],
    "JSON string": lambda o: "event",
    "JSON null": lambda o: None,
}


def _stripe_body(case: str, order_no: str) -> bytes:
    event = STRIPE_CASES[case](order_no)
    text = json.dumps(event)  # ensure_ascii: a lone surrogate travels as a \ud800 escape
    if '"DEEP"' in text:
        text = text.replace('"DEEP"', "[" * DEEP + "]" * DEEP)
    return text.encode()


async def _no_effects(http: Any, db: Any, order: Order, before: dict[str, int]) -> None:
    """Nothing but the one webhook_event row was written."""
    after = await http.counts()
    assert {**after, "webhook_event": 0} == {**before, "webhook_event": 0}
    assert after["webhook_event"] == before["webhook_event"] + 1
    async with db.session() as s:
        assert (await s.get(Order, order.id)).status == "pending"


async def _the_stored_event(db: Any) -> WebhookEvent:
    async with db.session() as s:
        (row,) = (await s.execute(select(WebhookEvent))).scalars().all()
    return row


@pytest.mark.parametrize("case", list(STRIPE_CASES))
async def test_signed_malformed_stripe_event_is_stored_with_its_error(db, now, case):
    shop = await make_shop(db, now)
    order = await make_order(db, shop, now, provider="stripe")
    body = _stripe_body(case, order.order_no)
    headers = {
        "Stripe-Signature": sign_payload(body, WEBHOOK_SECRET),
        "Content-Type": "application/json",
    }
    async with webhook_client(db, now) as http:
        before = await http.counts()
        status, text = await http.post("stripe", body, headers)
        again, _ = await http.post("stripe", body, headers)  # Stripe's retry: the same record
        await _no_effects(http, db, order, before)
    assert status == 200 and again == 200, (case, status, text)
    row = await _the_stored_event(db)
    assert row.raw_body == body
    assert row.error and row.error.startswith("malformed: ") and row.processed_at == now
    assert "\n" not in row.error


SANDBOX_CASES: dict[str, Any] = {
    "amount as text": {"amount_minor": "499"},
    "negative amount": {"amount_minor": -499},
    "zero amount": {"amount_minor": 0},
    "overflowing amount": {"amount_minor": 10**30},
    "bad currency": {"currency": "ZZZZZZZZZZZZZZZ"},
    "lower-case currency": {"currency": "usd"},
    "payment id as list": {"payment_id": ["x"]},
    "NUL in payment id": {"payment_id": "sbx\x00"},
    "surrogate in order number": {"order_no": "\ud800"},
    "over-long payment id": {"payment_id": "p" * 256},
    "no payment id": {"payment_id": None},
    "over-long event id": {"id": "e" * 256},
}


def _sandbox_body(order: Order, case: str) -> bytes:
    data = {
        "id": f"sbxevt_{case.replace(' ', '_')}",
        "type": "payment.succeeded",
        "order_no": order.order_no,
        "amount_minor": order.amount_minor,
        "currency": order.currency,
        "payment_id": f"sbxpay_{order.order_no}",
    }
    return json.dumps({**data, **SANDBOX_CASES[case]}).encode()


RAW_SANDBOX_BODIES = {
    "not UTF-8": b'{"id": "e1", "type": "payment.succeeded", "note": "\xff\xfe"}',
    "not JSON": b"payment.succeeded",
    "JSON array": b"[1, 2]",
    "deep nesting": b'{"id": "e2", "type": "payment.succeeded", "x": '
    + b"[" * DEEP
    + b"]" * DEEP
    + b"}",
}


@pytest.mark.parametrize("case", list(SANDBOX_CASES) + list(RAW_SANDBOX_BODIES))
async def test_signed_malformed_sandbox_event_is_stored_with_its_error(db, now, case):
    shop = await make_shop(db, now)
    order = await make_order(db, shop, now)
    body = RAW_SANDBOX_BODIES.get(case) or _sandbox_body(order, case)
    async with webhook_client(db, now) as http:
        before = await http.counts()
        status, text = await http.post(
            "sandbox", body, {SANDBOX_HEADER: sign(body, SANDBOX_SECRET)}
        )
        await _no_effects(http, db, order, before)
    assert status == 200, (case, status, text)
    row = await _the_stored_event(db)
    assert row.raw_body == body and row.error.startswith("malformed: ")
    assert row.processed_at == now


async def test_stripe_body_that_is_not_utf8_cannot_be_verified(db, now):
    """Stripe signs the body's UTF-8 text (the SDK verifies it as such): other bytes are
    unverifiable, so they are rejected like any unverified request."""
    shop = await make_shop(db, now)
    await make_order(db, shop, now, provider="stripe")
    body = b'{"id": "evt_1", "object": "event", "note": "\xff"}'
    async with webhook_client(db, now) as http:
        before = await http.counts()
        status, text = await http.post(
            "stripe", body, {"Stripe-Signature": sign_payload(body, WEBHOOK_SECRET)}
        )
        assert await http.counts() == before
    assert status == 400 and "UTF-8" in text


async def test_a_valid_event_after_a_malformed_one_still_applies(db, now):
    shop = await make_shop(db, now)
    order = await make_order(db, shop, now, provider="stripe")
    bad = _stripe_body("negative amount", order.order_no)
    good = json.dumps(_session(order.order_no, amount_total=499)).encode()
    async with webhook_client(db, now) as http:
        for body in (bad, good):
            ts = int(time.time())
            signature = sign_payload(body, WEBHOOK_SECRET, ts)
            status, _ = await http.post("stripe", body, {"Stripe-Signature": signature})
            assert status == 200
        counts = await http.counts()
    assert counts["webhook_event"] == 2 and counts["payment"] == 1
    async with db.session() as s:
        assert (await s.get(Order, order.id)).status == "paid"
