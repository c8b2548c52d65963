"""Stripe webhook payloads for tests: Stripe's own example objects (tests/fixtures/stripe,
trimmed from stripe-mock's fixtures), set for the scenario, wrapped in an event envelope and
signed for real with a test secret. Signing and the envelope come from the sandbox host, so
the tests and the fake speak one dialect; the objects are the tests' own copies."""

from __future__ import annotations

import copy
import json
import time
from functools import cache
from pathlib import Path
from typing import Any

from sandbox.stripe_host import build_event, event_body, new_id, sign_payload

__all__ = [
    "SECRET_KEY",
    "WEBHOOK_SECRET",
    "build_event",
    "completed_session",
    "dispute",
    "event_body",
    "new_id",
    "paid_invoice",
    "refunded_charge",
    "sign_payload",
    "signed",
    "stripe_object",
    "subscription",
]

SECRET_KEY = "sk_test_gatepass_unit"
WEBHOOK_SECRET = "whsec_gatepass_unit"
FIXTURES = Path(__file__).parent / "fixtures" / "stripe"


@cache
def _load(kind: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{kind.replace('.', '_')}.json").read_text("utf-8"))


def stripe_object(kind: str, **overrides: Any) -> dict[str, Any]:
    obj = copy.deepcopy(_load(kind))
    obj.update(overrides)
    return obj


def completed_session(
    order_no: str = "GP-1001", amount: int = 499, currency: str = "usd", **overrides: Any
) -> dict[str, Any]:
    """A paid one-time `checkout.session` as checkout.session.completed carries it."""
    fields = {
        "id": new_id("cs"),
        "client_reference_id": order_no,
        "metadata": {"order_no": order_no},
        "amount_subtotal": amount,
        "amount_total": amount,
        "currency": currency,
        "status": "complete",
        "payment_status": "paid",
        "payment_intent": new_id("pi"),
        "customer": new_id("cus"),
    }
    return stripe_object("checkout.session", **{**fields, **overrides})


def paid_invoice(
    order_no: str | None = "GP-1001",
    subscription_id: str = "sub_1Test",
    amount: int = 999,
    period_end: int = 1767225600,
    **overrides: Any,
) -> dict[str, Any]:
    """A paid renewal `invoice` (2025+ shape: subscription details under `parent`)."""
    fields = {
        "id": new_id("in"),
        "amount_due": amount,
        "amount_paid": amount,
        "total": amount,
        "subtotal": amount,
    }
    inv = stripe_object("invoice", **{**fields, **overrides})
    meta = {"order_no": order_no} if order_no else {}
    inv["parent"]["subscription_details"] = {"metadata": meta, "subscription": subscription_id}
    line = inv["lines"]["data"][0]
    line.update(amount=amount, period={"start": period_end - 30 * 86400, "end": period_end})
    return inv


def subscription(
    order_no: str = "GP-1001", period_end: int = 1767225600, **overrides: Any
) -> dict[str, Any]:
    fields = {"id": new_id("sub"), "metadata": {"order_no": order_no}}
    sub = stripe_object("subscription", **{**fields, **overrides})
    sub["items"]["data"][0].update(
        current_period_end=period_end, current_period_start=period_end - 30 * 86400
    )
    return sub


def refunded_charge(
    payment_intent: str | None,
    amount: int = 499,
    refunded: int = 499,
    order_no: str | None = "GP-1001",
    **overrides: Any,
) -> dict[str, Any]:
    fields = {
        "id": new_id("ch"),
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": refunded,
        "refunded": refunded == amount,
        "payment_intent": payment_intent,
        "metadata": {"order_no": order_no} if order_no else {},
    }
    return stripe_object("charge", **{**fields, **overrides})


def dispute(
    payment_intent: str | None, charge: str = "ch_1Test", amount: int = 499, **overrides: Any
) -> dict[str, Any]:
    fields = {
        "id": new_id("dp"),
        "amount": amount,
        "charge": charge,
        "payment_intent": payment_intent,
        "status": "needs_response",
    }
    return stripe_object("dispute", **{**fields, **overrides})


def signed(
    event_type: str,
    obj: dict[str, Any],
    secret: str = WEBHOOK_SECRET,
    timestamp: int | None = None,
    event_id: str | None = None,
) -> tuple[dict[str, str], bytes, dict[str, Any]]:
    """(headers, body, event) of a webhook delivery as Stripe would send it."""
    event = build_event(event_type, obj, event_id=event_id)
    body = event_body(event)
    ts = int(time.time()) if timestamp is None else timestamp
    return (
        {
            "Stripe-Signature": sign_payload(body, secret, ts),
            "Content-Type": "application/json; charset=utf-8",
        },
        body,
        event,
    )


async def second_checkout_session(
    base_url: str, secret_key: str, order_no: str, product: str
) -> str:
    """Another Checkout Session for the same order, made at the local Stripe host over HTTP
    (as when an old session link is reused after its idempotency key lapsed): the buyer can
    pay the order a second time. Returns the session id."""
    import aiohttp

    form = {
        "mode": "payment",
        "client_reference_id": order_no,
        "metadata[order_no]": order_no,
        "payment_intent_data[metadata][order_no]": order_no,
        "line_items[0][price_data][currency]": "usd",
        "line_items[0][price_data][unit_amount]": "499",
        "line_items[0][price_data][product_data][name]": product,
        "line_items[0][quantity]": "1",
        "success_url": "https://example.com/ok",
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{base_url}/v1/checkout/sessions",
            data=form,
            headers={"Authorization": f"Bearer {secret_key}"},
        ) as r,
    ):
        assert r.status == 200, await r.text()
        return str((await r.json())["id"])
