"""Provider-neutral payment events: what every provider's webhook is turned into.

Every event is validated when it is built, so nothing a provider sends (even correctly
signed) reaches the ledger unless it fits it: amounts are integers in minor units within
`MAX_AMOUNT_MINOR`, currencies are ISO 4217 codes (Babel's CLDR list) or XTR, and every id is
printable text that fits its column (no NUL, no lone surrogate, not over-long). A body that
does not fit raises `InvalidEvent`; the provider turns it into `MalformedEvent`, which ingest
stores raw with its error instead of applying it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from babel.numbers import list_currencies

from billing.errors import InvalidEvent

# The largest amount we store, in minor units: 10**12 is ten billion in a two-decimal
# currency, far beyond any sale of access, and well inside BIGINT. A larger number in a
# payment event is a bug or an attack, not money.
MAX_AMOUNT_MINOR = 10**12

# ISO 4217 as CLDR knows it (current and historic codes; the list Babel ships and keeps up to
# date), plus XTR, Telegram Stars.
KNOWN_CURRENCIES = frozenset(list_currencies()) | {"XTR"}

# Column widths of storage/models.py: an id longer than its column cannot be stored.
MAX_ID_LENGTH = 255  # payment ids, references, subscription and event ids
MAX_EVENT_TYPE_LENGTH = 64  # webhook_event.event_type
MAX_ORDER_NO_LENGTH = 32  # orders.order_no
MAX_URL_LENGTH = 2048
# A paid period cannot end after this: later dates are nonsense, and near datetime's own
# limit extending access by a period would overflow.
MAX_PERIOD_END = datetime(2200, 1, 1, tzinfo=UTC)


class EventKind(StrEnum):
    PAID = "paid"  # the order's money arrived: grant
    RENEWED = "renewed"  # a recurring period was paid: extend
    PAYMENT_FAILED = "payment_failed"
    SUBSCRIPTION_UPDATED = "subscription_updated"
    SUBSCRIPTION_ENDED = "subscription_ended"
    REFUNDED = "refunded"
    DISPUTED = "disputed"
    DISPUTE_CLOSED = "dispute_closed"  # the bank decided: won (money back to us) or lost
    # A refund we asked for that the provider accepted, then failed: no money moved (WeChat
    # Pay's REFUND.ABNORMAL / REFUND.CLOSED). The charge may be asked about again.
    REFUND_FAILED = "refund_failed"


# Kinds whose amount is money that moved and is stored as a payment row: it must be positive.
MONEY_KINDS = frozenset({EventKind.PAID, EventKind.RENEWED, EventKind.REFUNDED, EventKind.DISPUTED})


def check_text(name: str, value: Any, max_length: int, *, optional: bool = False) -> None:
    """Raise InvalidEvent unless `value` is text that any database column can hold."""
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise InvalidEvent(f"{name} is {type(value).__name__}, not text")
    if not value:
        raise InvalidEvent(f"{name} is empty")
    if len(value) > max_length:
        raise InvalidEvent(f"{name} is {len(value)} characters long (at most {max_length})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidEvent(f"{name} contains a lone surrogate") from None
    if not value.isprintable():  # NUL and every other control character
        raise InvalidEvent(f"{name} contains control characters")


def check_amount(name: str, value: Any, *, positive: bool, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidEvent(f"{name} is {type(value).__name__}, not an integer")
    low = 1 if positive else 0
    if not low <= value <= MAX_AMOUNT_MINOR:
        raise InvalidEvent(f"{name} {value} is outside {low}..{MAX_AMOUNT_MINOR}")


def check_currency(value: Any) -> None:
    if not isinstance(value, str) or value not in KNOWN_CURRENCIES:
        shown = value[:8] if isinstance(value, str) else type(value).__name__
        raise InvalidEvent(f"currency {shown!r} is not an ISO 4217 code or XTR")


@dataclass(frozen=True)
class PaymentEvent:
    provider: str
    event_id: str  # the provider's id for this notification (dedupe key)
    event_type: str  # the provider's own type name, for the record
    kind: EventKind
    order_no: str | None  # our order number, when the provider carries it
    amount_minor: int
    currency: str  # upper-case ISO 4217 or XTR
    provider_payment_id: str | None  # charge / payment intent / transaction id
    provider_ref: str | None = None  # checkout session id or equivalent
    subscription_id: str | None = None
    period_end: datetime | None = None
    # -- recurring (invoice / subscription events) --
    action_url: str | None = None  # where the buyer fixes a failed payment
    cancel_at_period_end: bool | None = None  # the subscription will not renew (None: unknown)
    first_period: bool = False  # the invoice pays a subscription's first period
    # -- reversals (refund / dispute events) --
    reversal_id: str | None = None  # the refund's or dispute's own id (dedupe key)
    reversal_amount_minor: int | None = None  # this refund's amount (amount_minor: all refunded)
    payment_amount_minor: int | None = None  # the full amount of the payment being reversed
    payment_refs: tuple[str, ...] = ()  # other ids naming that payment (charge, invoice)
    dispute_status: str | None = None  # DISPUTE_CLOSED: "won", "lost" (or another word)

    def __post_init__(self) -> None:
        check_text("provider", self.provider, 16)
        check_text("event id", self.event_id, MAX_ID_LENGTH)
        check_text("event type", self.event_type, MAX_EVENT_TYPE_LENGTH)
        if not isinstance(self.kind, EventKind):
            raise InvalidEvent(f"kind {self.kind!r} is not an EventKind")
        check_text("order number", self.order_no, MAX_ORDER_NO_LENGTH, optional=True)
        check_amount("amount", self.amount_minor, positive=self.kind in MONEY_KINDS)
        check_currency(self.currency)
        for name, value in (
            ("payment id", self.provider_payment_id),
            ("checkout reference", self.provider_ref),
            ("subscription id", self.subscription_id),
            ("reversal id", self.reversal_id),
        ):
            check_text(name, value, MAX_ID_LENGTH, optional=True)
        check_text("action url", self.action_url, MAX_URL_LENGTH, optional=True)
        check_amount("reversal amount", self.reversal_amount_minor, positive=True, optional=True)
        check_amount("payment amount", self.payment_amount_minor, positive=True, optional=True)
        if not isinstance(self.payment_refs, tuple):
            raise InvalidEvent("payment refs are not a tuple")
        for ref in self.payment_refs:
            check_text("payment ref", ref, MAX_ID_LENGTH)
        if self.period_end is not None and (
            not isinstance(self.period_end, datetime) or self.period_end.tzinfo is None
        ):
            raise InvalidEvent("period end is not an aware datetime")
        if self.period_end is not None and self.period_end >= MAX_PERIOD_END:
            raise InvalidEvent(f"period end {self.period_end:%Y-%m-%d} is after 2200")
        for name, flag in (
            ("cancel_at_period_end", self.cancel_at_period_end),
            ("first_period", self.first_period),
        ):
            if flag is not None and not isinstance(flag, bool):
                raise InvalidEvent(f"{name} is not a boolean")


@dataclass(frozen=True)
class WebhookNotice:
    """A verified webhook: its id and type, and the event when it is one we act on."""

    event_id: str
    event_type: str
    event: PaymentEvent | None

    def __post_init__(self) -> None:
        check_text("event id", self.event_id, MAX_ID_LENGTH)
        check_text("event type", self.event_type, MAX_EVENT_TYPE_LENGTH)
