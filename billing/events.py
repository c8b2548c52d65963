"""Provider-neutral payment events: what every provider's webhook is turned into."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class EventKind(StrEnum):
    PAID = "paid"                  # the order's money arrived: grant
    RENEWED = "renewed"            # a recurring period was paid: extend
    PAYMENT_FAILED = "payment_failed"
    SUBSCRIPTION_UPDATED = "subscription_updated"
    SUBSCRIPTION_ENDED = "subscription_ended"
    REFUNDED = "refunded"
    DISPUTED = "disputed"
    DISPUTE_CLOSED = "dispute_closed"  # the bank decided: won (money back to us) or lost


@dataclass(frozen=True)
class PaymentEvent:
    provider: str
    event_id: str                      # the provider's id for this notification (dedupe key)
    event_type: str                    # the provider's own type name, for the record
    kind: EventKind
    order_no: str | None               # our order number, when the provider carries it
    amount_minor: int
    currency: str                      # upper-case ISO 4217 or XTR
    provider_payment_id: str | None    # charge / payment intent / transaction id
    provider_ref: str | None = None    # checkout session id or equivalent
    subscription_id: str | None = None
    period_end: datetime | None = None
    # -- recurring (invoice / subscription events) --
    action_url: str | None = None            # where the buyer fixes a failed payment
    cancel_at_period_end: bool | None = None  # the subscription will not renew (None: unknown)
    first_period: bool = False               # the invoice pays a subscription's first period
    # -- reversals (refund / dispute events) --
    reversal_id: str | None = None           # the refund's or dispute's own id (dedupe key)
    reversal_amount_minor: int | None = None  # this refund's amount (amount_minor: all refunded)
    payment_amount_minor: int | None = None  # the full amount of the payment being reversed
    payment_refs: tuple[str, ...] = ()       # other ids naming that payment (charge, invoice)
    dispute_status: str | None = None        # DISPUTE_CLOSED: "won", "lost" (or another word)


@dataclass(frozen=True)
class WebhookNotice:
    """A verified webhook: its id and type, and the event when it is one we act on."""

    event_id: str
    event_type: str
    event: PaymentEvent | None
