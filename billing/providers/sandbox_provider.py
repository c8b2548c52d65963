"""The sandbox provider: a local checkout page instead of a bank, for the demo and tests.

Its Pay button (sandbox/checkout_page.py) posts a notification signed exactly like a real
provider's to POST /webhooks/sandbox, so the payment takes the same verified path as Stripe's.
Never configure it in production: anyone who can reach the page can "pay".
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping

from billing.errors import WebhookRejected
from billing.events import EventKind, PaymentEvent, WebhookNotice
from billing.provider import Checkout, CheckoutRequest, CheckoutStatus, WebhookAck

SIGNATURE_HEADER = "X-Sandbox-Signature"
TOLERANCE_SECONDS = 300


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


class SandboxProvider:
    name = "sandbox"

    def __init__(self, webhook_secret: str, public_url: str) -> None:
        self._secret = webhook_secret
        self._public_url = public_url.rstrip("/")

    def accepts(self, currency: str) -> bool:
        return currency != "XTR"

    async def create_checkout(self, req: CheckoutRequest) -> Checkout:
        return Checkout(url=f"{self._public_url}/sandbox/pay/{req.order_no}",
                        provider_ref=f"sbx_{req.order_no}")

    async def fetch_status(self, provider_ref: str) -> CheckoutStatus:
        """The sandbox checkout lives only in our database (its page reads the order), so
        there is nothing to ask: it stays open until reconciliation closes the order."""
        return CheckoutStatus("open")

    async def expire_checkout(self, provider_ref: str) -> CheckoutStatus:
        """Closing is just the order's own expiry here; a late press of Pay is still honoured,
        as a late payment is for every provider (billing.payments.PAYABLE)."""
        return CheckoutStatus("expired")

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookNotice:
        header = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER.lower()), None)
        if not header:
            raise WebhookRejected(f"missing {SIGNATURE_HEADER} header")
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        ts, mac = parts.get("t", ""), parts.get("v1", "")
        if not ts.isdigit():
            raise WebhookRejected("signature header has no timestamp")
        if abs(time.time() - int(ts)) > TOLERANCE_SECONDS:
            raise WebhookRejected("timestamp outside the tolerance zone")
        want = sign(body, self._secret, int(ts)).split("v1=", 1)[1]
        if not hmac.compare_digest(want, mac):
            raise WebhookRejected("signature does not match the payload")
        try:
            data = json.loads(body)
            event = PaymentEvent(
                provider=self.name, event_id=str(data["id"]), event_type=str(data["type"]),
                kind=EventKind.PAID, order_no=str(data["order_no"]),
                amount_minor=int(data["amount_minor"]), currency=str(data["currency"]).upper(),
                provider_payment_id=str(data["payment_id"]),
                provider_ref=f"sbx_{data['order_no']}",
            )
        except (ValueError, KeyError, TypeError) as e:
            raise WebhookRejected(f"body is not a sandbox payment event ({e})") from None
        if data["type"] != "payment.succeeded":
            return WebhookNotice(event.event_id, event.event_type, None)
        return WebhookNotice(event.event_id, event.event_type, event)

    def ack(self) -> WebhookAck:
        return WebhookAck(200, b"ok")

    async def close(self) -> None:
        return None
