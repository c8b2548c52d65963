"""The interface every payment provider implements (billing/providers/*)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from billing.errors import PaymentRefused
from billing.events import WebhookNotice


@dataclass(frozen=True)
class CheckoutRequest:
    order_no: str
    title: str
    amount_minor: int
    currency: str
    recurring: bool
    duration_days: int | None  # the plan's period (for subscriptions: the billing period)
    success_url: str
    cancel_url: str
    customer_ref: str  # our user id as text, for the provider's records
    metadata: dict[str, str] = field(default_factory=dict)
    # The buyer's id on their chat platform (Telegram user id): where a provider that bills
    # inside the chat (Telegram Stars) sends its invoice.
    buyer_ref: str = ""
    # When the order times out (UTC-aware): providers that take an expiry of their own
    # (WeChat Pay `time_expire`, Alipay `time_expire`) stop the QR code working then.
    expires_at: datetime | None = None


# How the buyer reaches the payment: a link to open (a checkout page, an invoice link), an
# invoice the provider already sent into the buyer's chat (Telegram Stars, one-time), or a
# QR code to scan with the provider's app (WeChat Pay Native, Alipay face-to-face): then
# `Checkout.url` is the QR code's payload (`weixin://wxpay/...`, `https://qr.alipay.com/...`),
# which the bot sends as an image and /pay/<order_no> shows.
CheckoutShown = Literal["link", "invoice_sent", "qr"]


@dataclass(frozen=True)
class Checkout:
    # where the buyer pays ("" when the invoice was sent into the chat; the QR payload for
    # shown="qr")
    url: str
    provider_ref: str  # the provider's id for this checkout (session id)
    shown: CheckoutShown = "link"


@dataclass(frozen=True)
class WebhookAck:
    status: int
    body: bytes
    content_type: str = "text/plain"


CheckoutState = Literal["paid", "open", "expired"]


@dataclass(frozen=True, eq=False)
class CheckoutStatus:
    """What the provider says about a checkout (reconciliation). For "paid", the amount and
    ids are the ones its webhook would carry, so a reconciled grant is the webhook's grant."""

    state: CheckoutState
    amount_minor: int | None = None
    currency: str | None = None  # upper-case
    provider_payment_id: str | None = None
    subscription_id: str | None = None
    # The event id the provider's own notice of this payment carries, when the provider
    # knows it (Stars: the charge id): the reconciled grant then dedupes with that notice.
    event_id: str | None = None

    def _key(self) -> tuple[Any, ...]:
        return (
            self.state,
            self.amount_minor,
            self.currency,
            self.provider_payment_id,
            self.subscription_id,
            self.event_id,
        )

    def __eq__(self, other: object) -> bool:
        # Equal to its state word too, so `status == "paid"` reads as it should.
        if isinstance(other, str):
            return self.state == other
        if isinstance(other, CheckoutStatus):
            return self._key() == other._key()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.state)


class PaymentProvider(Protocol):
    name: str

    def accepts(self, currency: str) -> bool: ...

    async def create_checkout(self, req: CheckoutRequest) -> Checkout: ...

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        """Check the signature on the raw bytes. Raises WebhookRejected (400, nothing
        stored) for anything unverified, including a malformed signature header."""
        ...

    def parse_event(self, body: bytes) -> WebhookNotice:
        """Read a verified body (also a stored one, on replay). Raises MalformedEvent for a
        body that cannot be used; never anything else."""
        ...

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookNotice:
        """verify_webhook, then parse_event."""
        ...

    def ack(self) -> WebhookAck:
        """The body the provider expects on success."""
        ...

    async def fetch_status(self, provider_ref: str) -> CheckoutStatus:
        """The checkout's state at the provider. Raises PaymentError."""
        ...

    async def expire_checkout(self, provider_ref: str) -> CheckoutStatus:
        """Close an open checkout so it can no longer be paid; returns its final state
        ("paid" when the buyer paid first, "open" when the provider cannot close it because
        a payment is in flight). Raises PaymentError."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class SubscriptionCanceller(Protocol):
    """Providers with subscriptions the buyer can stop renewing (Stripe, Telegram Stars)."""

    async def cancel_subscription_at_period_end(
        self, subscription_id: str, *, buyer_ref: str = ""
    ) -> None:
        """`buyer_ref` is the buyer's platform user id (a Stars subscription is named by the
        user and its first charge); others may ignore it."""
        ...


@runtime_checkable
class EventResolver(Protocol):
    """Providers that complete a verified notice with API lookups its body lacks (Stripe:
    which invoice a refunded payment paid). Called before the event's transaction."""

    async def resolve(self, notice: WebhookNotice) -> WebhookNotice: ...


@runtime_checkable
class Refunder(Protocol):
    """Providers that refund a payment through their API (Stripe)."""

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
        """Refund `amount_minor` of the payment recorded as `payment_id`; the refund's id.
        The same `idempotency_key` never refunds twice. `buyer_ref` is the buyer's platform
        user id (Telegram Stars refunds name the user; others may ignore it). Raises
        PaymentRefused when the provider will not (retrying cannot help), PaymentError when
        it may later."""
        ...


@runtime_checkable
class RefundSettler(Protocol):
    """Providers that send no refund webhook of their own (Telegram Stars): once the refund
    call succeeded, the outbox applies this notice through the same path as a webhook
    (billing.ingest.process_notice). Its event id must be the one any later report of the
    same refund carries (Stars: the `refunded_payment` message), so the two dedupe."""

    def refund_notice(
        self, payment_id: str, amount_minor: int, currency: str, refund_id: str, order_no: str
    ) -> WebhookNotice: ...


@runtime_checkable
class RefundTracker(Protocol):
    """Providers whose refund call only starts a refund (WeChat Pay answers PROCESSING) and
    whose notification of the outcome may be lost (our outage outlasting their retries, a
    wrong notify_url). The outbox asks again later (billing/provider_calls.refund_check).

    `refund_id` is what `Refunder.refund` returned and `idempotency_key` the key it was
    called with (a provider looks the refund up by either: WeChat Pay by the out_refund_no
    made from the key). The answer is the notice to apply through the webhook path
    (billing.ingest.process_notice) once the refund settled: REFUNDED with the same
    `reversal_id` its notification carries (the ledger records the refund once, whichever
    comes first), or REFUND_FAILED when no money moved; None while it is still in progress.
    The notice's event id must be the same for the same outcome, so asking twice applies
    it once. Raises PaymentError when the provider cannot be asked now."""

    async def refund_notice_now(
        self,
        refund_id: str,
        idempotency_key: str,
        payment_id: str,
        amount_minor: int,
        currency: str,
        order_no: str,
    ) -> WebhookNotice | None: ...


@runtime_checkable
class WebhookRefusal(Protocol):
    """Providers that expect a failed webhook to be answered in their own shape (WeChat Pay:
    4xx/5xx with `{"code":"FAIL","message":"..."}`; Alipay: anything but `success`). Without
    it a refusal is plain text. `status` is 400 (unverified: nothing stored) or 500 (our side
    failed: send it again)."""

    def refuse(self, status: int, message: str) -> WebhookAck: ...


@runtime_checkable
class QrPaymentProvider(Protocol):
    """Providers paid by scanning a QR code (create_checkout returns shown="qr").
    `scan_app` names the app the buyer scans with ("wechat" | "alipay"): the bot's caption and
    the pay page say "scan with WeChat" / "scan with Alipay" in the buyer's language.

    A QR payment is one-off (WeChat Pay Native and Alipay face-to-face bill no subscription):
    a recurring plan does not offer these providers, and their create_checkout refuses one."""

    scan_app: str


def offers(provider: PaymentProvider, currency: str, *, recurring: bool) -> bool:
    """Whether a plan priced in `currency` (recurring or not) may offer this provider: it
    takes the currency, and a QR payment (one-off) is never offered for a subscription."""
    if recurring and isinstance(provider, QrPaymentProvider):
        return False
    return provider.accepts(currency)


def refuse_unpayable_by_qr(provider: str, method: str, currency: str, req: CheckoutRequest) -> None:
    """What no QR payment can be, checked before the provider is called: raises
    PaymentRefused (retrying cannot help) for another currency, a subscription (`method`
    names the provider's payment method, as the refusal says it), or an amount under one
    minor unit."""
    if req.currency.upper() != currency:
        raise PaymentRefused(f"{provider} does not accept {req.currency}")
    if req.recurring:
        raise PaymentRefused(f"{provider} {method} cannot bill a subscription")
    if req.amount_minor <= 0:
        raise PaymentRefused("amount must be positive")
