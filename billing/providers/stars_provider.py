"""Telegram Stars (currency XTR): payments inside the chat, through the bot's own Bot API.

Offered whenever Telegram is configured: there is no account and no provider token (Stars
invoices take an empty one). The Bot API calls it needs come through `StarsApi`, which the
bot implements (bot/stars_api.py); billing never imports aiogram.

- One-time plans: the invoice is sent into the buyer's private chat (sendInvoice); the
  checkout answers "invoice sent" rather than a URL.
- 30-day subscriptions: an invoice link (createInvoiceLink with subscription_period); the
  bot shows it as the pay button. Telegram charges again every 30 days by itself.
- Payments, refunds and subscription changes reach us as updates (billing/stars.py turns
  them into ledger events); refunds we make are recorded at once (RefundSettler).
- Reconciliation reads the bot's Star transactions (getStarTransactions, paged): a payment
  whose update was lost is found there under the same id as its charge.

Errors: a 400 from Telegram is PaymentRefused (asking again will not help); 429, 5xx and
network failures are PaymentError (try again later).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from billing.errors import PaymentError, PaymentRefused, WebhookRejected
from billing.events import WebhookNotice
from billing.provider import Checkout, CheckoutRequest, CheckoutStatus, WebhookAck
from billing.stars import (
    CURRENCY,
    SUBSCRIPTION_MAX_STARS,
    SUBSCRIPTION_PERIOD_DAYS,
    SUBSCRIPTION_PERIOD_SECONDS,
    notice_from_body,
    refund_id,
    refund_notice,
)

# Bot API limits of an invoice's texts.
TITLE_MAX, DESCRIPTION_MAX = 32, 255
# getStarTransactions takes 1..100 per page.
PAGE_MAX = 100
# Telegram's answer when the payment was refunded before: the refund we want holds.
ALREADY_REFUNDED = "CHARGE_ALREADY_REFUNDED"


class StarsApiError(Exception):
    """A Bot API call failed: `status` is Telegram's error code (None: no answer at all)."""

    def __init__(self, status: int | None, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


@dataclass(frozen=True)
class StarTransaction:
    """What reconciliation needs of a StarTransaction."""

    id: str
    amount: int
    date: datetime
    incoming: bool  # source is set (money to the bot); else receiver (a refund, a withdrawal)
    user_id: int | None  # the partner, when it is a user
    transaction_type: str | None  # TransactionPartnerUser.transaction_type
    invoice_payload: str | None
    subscription_period: int | None = None


class StarsApi(Protocol):
    """The Bot API calls the Stars provider makes; each raises StarsApiError."""

    async def send_invoice(
        self, chat_id: int, *, title: str, description: str, payload: str, amount: int
    ) -> None: ...

    async def create_invoice_link(
        self,
        *,
        title: str,
        description: str,
        payload: str,
        amount: int,
        subscription_period: int | None,
    ) -> str: ...

    async def refund_star_payment(self, user_id: int, charge_id: str) -> None: ...

    async def edit_user_star_subscription(
        self, user_id: int, charge_id: str, *, is_canceled: bool
    ) -> None: ...

    async def get_star_transactions(self, offset: int, limit: int) -> list[StarTransaction]: ...


def _fail(e: StarsApiError) -> PaymentError:
    if e.status == 400:
        return PaymentRefused(e.description[:200])
    return PaymentError(f"Telegram: {e.description[:200]}")


class StarsProvider:
    name = "stars"

    def __init__(
        self,
        api: StarsApi,
        *,
        page_size: int = PAGE_MAX,
        max_pages: int = 50,
        scan_ttl_seconds: float = 5.0,
    ) -> None:
        """`page_size` (1..100) and `max_pages` bound one scan of the bot's transactions;
        a scan serves every order a reconciliation pass asks about for `scan_ttl_seconds`."""
        if not 1 <= page_size <= PAGE_MAX:
            raise ValueError(f"page_size must be 1..{PAGE_MAX}")
        self.api = api
        self.page_size = page_size
        self.max_pages = max_pages
        self.scan_ttl_seconds = scan_ttl_seconds
        self._scan: tuple[float, dict[str, StarTransaction], list[StarTransaction]] | None = None

    def accepts(self, currency: str) -> bool:
        return currency.upper() == CURRENCY

    # -- checkout ------------------------------------------------------------------------------

    async def create_checkout(self, req: CheckoutRequest) -> Checkout:
        if req.currency.upper() != CURRENCY:
            raise PaymentRefused(f"Stars take XTR, not {req.currency}")
        title = req.title[:TITLE_MAX]
        description = f"{req.title} · {req.order_no}"[:DESCRIPTION_MAX]
        try:
            if req.recurring:
                if req.duration_days != SUBSCRIPTION_PERIOD_DAYS:
                    raise PaymentRefused("Stars subscriptions renew every 30 days")
                if req.amount_minor > SUBSCRIPTION_MAX_STARS:
                    raise PaymentRefused(
                        f"a Stars subscription costs at most {SUBSCRIPTION_MAX_STARS}"
                    )
                link = await self.api.create_invoice_link(
                    title=title,
                    description=description,
                    payload=req.order_no,
                    amount=req.amount_minor,
                    subscription_period=SUBSCRIPTION_PERIOD_SECONDS,
                )
                return Checkout(url=link, provider_ref=req.order_no)
            if not req.buyer_ref.isdigit():
                raise PaymentRefused("a Stars invoice needs the buyer's Telegram id")
            await self.api.send_invoice(
                int(req.buyer_ref),
                title=title,
                description=description,
                payload=req.order_no,
                amount=req.amount_minor,
            )
        except StarsApiError as e:
            raise _fail(e) from e
        return Checkout(url="", provider_ref=req.order_no, shown="invoice_sent")

    # -- no webhooks: Stars money arrives as Telegram updates -------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        raise WebhookRejected("Telegram Stars payments arrive as bot updates, not webhooks")

    def parse_event(self, body: bytes) -> WebhookNotice:
        """A Stars message the bot stored because it could not apply it (replay)."""
        return notice_from_body(body)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookNotice:
        self.verify_webhook(headers, body)
        return self.parse_event(body)

    def ack(self) -> WebhookAck:
        return WebhookAck(200, b"ok")

    # -- reconciliation ----------------------------------------------------------------------

    async def _payments(self) -> dict[str, StarTransaction]:
        """The bot's incoming invoice payments by invoice payload (our order number), from
        one paged scan of getStarTransactions, reused for a few seconds."""
        return (await self._transactions())[0]

    async def subscription_payments(self) -> list[StarTransaction]:
        """Every subscription payment (first and renewals) in the bot's transactions that
        was not refunded, oldest first: reconciliation applies those it has no record of
        (billing/stars_reconcile.py), so a renewal whose update was lost still extends."""
        return (await self._transactions())[1]

    async def _transactions(self) -> tuple[dict[str, StarTransaction], list[StarTransaction]]:
        """One paged scan of getStarTransactions, reused for a few seconds: the first
        payment per order number, and the subscription payments."""
        now = time.monotonic()
        if self._scan is not None and now - self._scan[0] < self.scan_ttl_seconds:
            return self._scan[1], self._scan[2]
        found: dict[str, StarTransaction] = {}
        subs: list[StarTransaction] = []
        refunded: set[str] = set()
        offset = 0
        try:
            for _ in range(self.max_pages):
                page = await self.api.get_star_transactions(offset, self.page_size)
                for tx in page:
                    if not tx.incoming:
                        refunded.add(tx.id)  # a refund has the id of the payment it returns
                    elif tx.invoice_payload and tx.transaction_type in (None, "invoice_payment"):
                        # The first payment of an order is the one that settles it.
                        earlier = found.get(tx.invoice_payload)
                        if earlier is None or tx.date < earlier.date:
                            found[tx.invoice_payload] = tx
                        if tx.subscription_period:
                            subs.append(tx)
                if len(page) < self.page_size:
                    break
                offset += len(page)
        except StarsApiError as e:
            raise _fail(e) from e
        # A payment refunded already is no payment to grant (its refund message settles it).
        paid = {k: tx for k, tx in found.items() if tx.id not in refunded}
        subs = sorted((tx for tx in subs if tx.id not in refunded), key=lambda tx: tx.date)
        self._scan = (now, paid, subs)
        return paid, subs

    async def fetch_status(self, provider_ref: str) -> CheckoutStatus:
        """provider_ref is the order number (the invoice payload)."""
        tx = (await self._payments()).get(provider_ref)
        if tx is None:
            return CheckoutStatus("open")
        return CheckoutStatus(
            "paid",
            amount_minor=tx.amount,
            currency=CURRENCY,
            provider_payment_id=tx.id,
            subscription_id=tx.id if tx.subscription_period else None,
            event_id=tx.id,  # the charge id: the successful_payment's own event id
        )

    async def expire_checkout(self, provider_ref: str) -> CheckoutStatus:
        """A Stars invoice cannot be withdrawn at Telegram. It is closed on our side: the
        pre-checkout answer refuses any order that is no longer pending, so no payment can
        start once the order is expired (one approved just before still lands, and is
        honoured: `expired` is payable)."""
        status = await self.fetch_status(provider_ref)
        return status if status.state == "paid" else CheckoutStatus("expired")

    # -- subscriptions and refunds -------------------------------------------------------------

    async def cancel_subscription_at_period_end(
        self, subscription_id: str, *, buyer_ref: str = ""
    ) -> None:
        if not buyer_ref.isdigit():
            raise PaymentRefused("stopping a Stars subscription needs the buyer's Telegram id")
        try:
            await self.api.edit_user_star_subscription(
                int(buyer_ref), subscription_id, is_canceled=True
            )
        except StarsApiError as e:
            raise _fail(e) from e

    async def refund(
        self,
        payment_id: str,
        amount_minor: int,
        currency: str,
        *,
        idempotency_key: str,
        reason: str = "duplicate",
        buyer_ref: str = "",
    ) -> str:
        """Stars refunds are whole: the payment `payment_id` (its charge id) goes back to
        the buyer. Telegram refunds a charge once, so a retry meets CHARGE_ALREADY_REFUNDED,
        which means the refund we want holds."""
        if not buyer_ref.isdigit():
            raise PaymentRefused("a Stars refund needs the buyer's Telegram id")
        try:
            await self.api.refund_star_payment(int(buyer_ref), payment_id)
        except StarsApiError as e:
            if e.status != 400 or ALREADY_REFUNDED not in e.description:
                raise _fail(e) from e
        return refund_id(payment_id)

    def refund_notice(
        self, payment_id: str, amount_minor: int, currency: str, refund_id: str, order_no: str
    ) -> WebhookNotice:
        return refund_notice(
            payment_id, order_no, amount_minor, currency, event_type="refund_star_payment"
        )

    async def close(self) -> None:
        return None
