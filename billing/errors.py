"""The errors billing raises; provider modules translate their SDK's errors into these."""

from __future__ import annotations


class PaymentError(Exception):
    """A provider call failed; the message is safe to log and short."""


class PaymentRefused(PaymentError):
    """The provider refused the request itself (a 4xx): asking again will not help."""


class WebhookRejected(Exception):
    """A webhook that failed verification (or whose signature header cannot be read);
    answered 400, nothing stored."""


class InvalidEvent(ValueError):
    """A payment event whose values do not fit the ledger (billing.events validation)."""


class MalformedEvent(Exception):
    """A verified webhook body we cannot use: stored raw with this error, never applied.

    `event_id` / `event_type` are the body's own when they could be read and are storable;
    otherwise None (ingest then keys the record on a digest of the body)."""

    def __init__(
        self, reason: str, event_id: str | None = None, event_type: str | None = None
    ) -> None:
        super().__init__(reason)
        self.event_id, self.event_type = event_id, event_type


def one_line(text: object, limit: int = 200) -> str:
    """Text from outside (a provider's message, an exception about a body) as one short
    line, for an error or a log."""
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
