"""A QR-code payment provider double for the buyer-side tests (the bot's QR photo, "I have
paid", the pay page), standing for WeChat Pay Native / Alipay face-to-face.

It is honest where the buyer's side depends on it: orders live in memory under their
provider ref; `pay` is the buyer scanning and paying and refuses a closed or unknown order
(as the real APIs do: ORDER_CLOSED / TRADE_NOT_EXIST); `fetch_status` and `expire_checkout`
report what happened; its notification is signed (HMAC over the raw body, the sandbox
provider's scheme) and goes through the service's real webhook route, so a payment reaches
the ledger by the same path as any provider's. It takes CNY only, in fen.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import aiohttp

from billing.errors import MalformedEvent, PaymentError, PaymentRefused, WebhookRejected
from billing.events import EventKind, PaymentEvent, WebhookNotice
from billing.provider import Checkout, CheckoutRequest, CheckoutStatus, WebhookAck
from billing.providers.sandbox_provider import sign
from billing.signature_header import parse_signature_header, single_header

SIGNATURE_HEADER = "X-Qr-Double-Signature"
TOLERANCE_SECONDS = 300


class QrRefused(Exception):
    """The double refused the buyer's scan (the order is closed, paid, or unknown)."""


@dataclass
class QrOrder:
    order_no: str
    ref: str
    payload: str
    amount_minor: int
    currency: str
    expires_at: datetime | None
    state: str = "open"  # open | paid | closed
    payment_id: str | None = None


class QrProviderDouble:
    """`name` / `scan_app`: "wechatpay" / "wechat" or "alipay" / "alipay"."""

    def __init__(
        self,
        name: str = "wechatpay",
        scan_app: str = "wechat",
        *,
        payload_prefix: str = "weixin://wxpay/bizpayurl?pr=",
        secret: str = "qr-double-secret",
    ) -> None:
        self.name, self.scan_app = name, scan_app
        self.payload_prefix = payload_prefix
        self.webhook_url = ""  # set by the test: where `notify` posts
        self.orders: dict[str, QrOrder] = {}  # by provider ref
        self.status_calls = 0
        self.fail_status: Exception | None = None  # raised by the next status queries
        self.status_delay = 0.0  # a slow provider
        self._secret = secret

    # --- the provider protocol ---------------------------------------------------------------
    def accepts(self, currency: str) -> bool:
        return currency == "CNY"

    async def create_checkout(self, req: CheckoutRequest) -> Checkout:
        if req.currency != "CNY":
            raise PaymentRefused(f"{self.name} takes CNY only, not {req.currency}")
        ref = f"{self.name}_{req.order_no}"
        order = QrOrder(
            req.order_no,
            ref,
            self.payload_prefix + secrets.token_urlsafe(12),
            req.amount_minor,
            req.currency,
            req.expires_at,
        )
        self.orders[ref] = order
        return Checkout(url=order.payload, provider_ref=ref, shown="qr")

    async def fetch_status(self, provider_ref: str) -> CheckoutStatus:
        self.status_calls += 1
        if self.status_delay:
            await asyncio.sleep(self.status_delay)
        if self.fail_status is not None:
            raise self.fail_status
        order = self.orders.get(provider_ref)
        if order is None:
            raise PaymentError(f"{self.name}: ORDER_NOT_EXIST {provider_ref}")
        return self._status(order)

    async def expire_checkout(self, provider_ref: str) -> CheckoutStatus:
        order = self.orders.get(provider_ref)
        if order is None:
            raise PaymentError(f"{self.name}: ORDER_NOT_EXIST {provider_ref}")
        if order.state == "open":
            order.state = "closed"
        return self._status(order)

    def _status(self, order: QrOrder) -> CheckoutStatus:
        if order.state == "paid":
            return CheckoutStatus(
                "paid", order.amount_minor, order.currency, provider_payment_id=order.payment_id
            )
        return CheckoutStatus("expired" if order.state == "closed" else "open")

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        sig = parse_signature_header(single_header(headers, SIGNATURE_HEADER), SIGNATURE_HEADER)
        if abs(time.time() - sig.timestamp) > TOLERANCE_SECONDS:
            raise WebhookRejected("timestamp outside the tolerance zone")
        want = sign(body, self._secret, sig.timestamp).split("v1=", 1)[1]
        if not any(hmac.compare_digest(want, mac) for mac in sig.signatures):
            raise WebhookRejected("signature does not match the payload")

    def parse_event(self, body: bytes) -> WebhookNotice:
        try:
            data = json.loads(body)
            event = PaymentEvent(
                provider=self.name,
                event_id=data["id"],
                event_type="TRANSACTION.SUCCESS",
                kind=EventKind.PAID,
                order_no=data["out_trade_no"],
                amount_minor=data["amount"],
                currency=data["currency"],
                provider_payment_id=data["transaction_id"],
                provider_ref=f"{self.name}_{data['out_trade_no']}",
            )
        except (ValueError, KeyError, TypeError) as e:
            raise MalformedEvent(f"{self.name} double: {e}") from None
        return WebhookNotice(event.event_id, event.event_type, event)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookNotice:
        self.verify_webhook(headers, body)
        return self.parse_event(body)

    def ack(self) -> WebhookAck:
        return WebhookAck(200, b"")

    async def close(self) -> None:
        return None

    # --- the buyer's phone and the provider's servers ------------------------------------------
    def order(self, order_no: str) -> QrOrder:
        return self.orders[f"{self.name}_{order_no}"]

    def pay(self, order_no: str) -> str:
        """The buyer scans and pays; no notification is sent (see `notify`)."""
        order = self.orders.get(f"{self.name}_{order_no}")
        if order is None:
            raise QrRefused("ORDER_NOT_EXIST")
        if order.state != "open":
            raise QrRefused("ORDER_PAID" if order.state == "paid" else "ORDER_CLOSED")
        order.state, order.payment_id = "paid", f"txn_{secrets.token_hex(8)}"
        return order.payment_id

    def notification(self, order_no: str) -> tuple[dict[str, str], bytes]:
        """The provider's signed notification of the order's payment: (headers, body)."""
        order = self.order(order_no)
        assert order.state == "paid" and order.payment_id is not None
        body = json.dumps(
            {
                "id": f"notify_{order.payment_id}",
                "out_trade_no": order_no,
                "transaction_id": order.payment_id,
                "amount": order.amount_minor,
                "currency": order.currency,
            }
        ).encode()
        return {
            SIGNATURE_HEADER: sign(body, self._secret),
            "Content-Type": "application/json",
        }, body

    async def notify(self, order_no: str) -> int:
        """Post the notification to the service's webhook route (`webhook_url`); returns
        the HTTP status the service answered."""
        headers, body = self.notification(order_no)
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.webhook_url, data=body, headers=headers) as r,
        ):
            return r.status
