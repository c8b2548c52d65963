"""The sandbox provider: a local checkout page instead of a bank, for the demo and tests.

Its Pay button (sandbox/checkout_page.py) posts a notification signed exactly like a real
provider's to POST /webhooks/sandbox, so the payment takes the same verified path as Stripe's.
Never configure it in production: anyone who can reach the page can "pay".
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

from billing.errors import InvalidEvent, MalformedEvent, WebhookRejected
from billing.events import MAX_ID_LENGTH, EventKind, PaymentEvent, WebhookNotice, check_text
from billing.provider import Checkout, CheckoutRequest, CheckoutStatus, WebhookAck
from billing.raw_event import load_json_object, storable_id, storable_type
from billing.signature_header import parse_signature_header, single_header

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
        return Checkout(
            url=f"{self._public_url}/sandbox/pay/{req.order_no}", provider_ref=f"sbx_{req.order_no}"
        )

    async def fetch_status(self, provider_ref: str) -> CheckoutStatus:
        """The sandbox checkout lives only in our database (its page reads the order), so
        there is nothing to ask: it stays open until reconciliation closes the order."""
        return CheckoutStatus("open")

    async def expire_checkout(self, provider_ref: str) -> CheckoutStatus:
        """Closing is just the order's own expiry here; a late press of Pay is still honoured,
        as a late payment is for every provider (billing.payments.PAYABLE)."""
        return CheckoutStatus("expired")

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        """Signature and age on the raw bytes; WebhookRejected (400, nothing stored) if not."""
        sig = parse_signature_header(single_header(headers, SIGNATURE_HEADER), SIGNATURE_HEADER)
        if abs(time.time() - sig.timestamp) > TOLERANCE_SECONDS:
            raise WebhookRejected("timestamp outside the tolerance zone")
        want = sign(body, self._secret, sig.timestamp).split("v1=", 1)[1]
        if not any(hmac.compare_digest(want, mac) for mac in sig.signatures):
            raise WebhookRejected("signature does not match the payload")

    def parse_event(self, body: bytes) -> WebhookNotice:
        """A verified body as a notice; MalformedEvent if it is not a usable sandbox event.
        Also the replay path, on a body verified when it was stored."""
        data = load_json_object(body)
        event_id, event_type = storable_id(data.get("id")), storable_type(data.get("type"))
        if event_id is None or event_type is None:
            raise MalformedEvent("sandbox event has no usable id or type", event_id, event_type)
        if event_type != "payment.succeeded":
            return WebhookNotice(event_id, event_type, None)
        try:
            order_no = data["order_no"]
            check_text("payment_id", data["payment_id"], MAX_ID_LENGTH)  # required here
            event = PaymentEvent(
                provider=self.name,
                event_id=event_id,
                event_type=event_type,
                kind=EventKind.PAID,
                order_no=order_no,
                amount_minor=data["amount_minor"],
                currency=data["currency"],
                provider_payment_id=data["payment_id"],
                provider_ref=f"sbx_{order_no}",
            )
        except KeyError as e:
            raise MalformedEvent(
                f"sandbox payment event has no {e}", event_id, event_type
            ) from None
        except InvalidEvent as e:
            raise MalformedEvent(f"sandbox payment event: {e}", event_id, event_type) from None
        return WebhookNotice(event_id, event_type, event)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookNotice:
        self.verify_webhook(headers, body)
        return self.parse_event(body)

    def ack(self) -> WebhookAck:
        return WebhookAck(200, b"ok")

    async def close(self) -> None:
        return None
